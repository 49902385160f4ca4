/* echo.c — the inotify echo of changes made elsewhere (DESIGN §4). */
#include "echo.h"

void
conatfs_echo_modified (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name)
{
}

gboolean
conatfs_echo_is_caller (ConatfsFs *fs, fuse_req_t req)
{
  return FALSE;
}
