"""The examples in examples/ run and do what their header says."""
import os
import subprocess


def test_hello_dkv(tmp_path):
    proc = subprocess.run([os.environ["HELLO_DKV"], str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "theme is saved at revision 1" in proc.stdout
    assert "change: theme = dark (our own echo)" in proc.stdout
    assert 'message: {"hello":1}' in proc.stdout
    assert proc.stderr == ""
