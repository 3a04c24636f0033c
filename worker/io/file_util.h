/* Small file-system helpers shared by the trainers and the model writers: copying a file
 * atomically, making a folder, deleting a folder tree. Errors carry the path (kernels/error.h). */
#ifndef SD_FILE_UTIL_H
#define SD_FILE_UTIL_H

#include <stddef.h>

/* Copies src to dst through dst.tmp (written, fsync'ed, renamed over dst): dst is either its old
 * self or the whole copy. The temporary file is removed on failure. */
int sd_copy_file(const char *src, const char *dst);

/* Writes the n bytes of data to dst through dst.tmp (written, fsync'ed, renamed over dst), as
 * sd_copy_file. */
int sd_write_file(const char *dst, const void *data, size_t n);

/* mkdir(path); an existing folder is fine. */
int sd_make_folder(const char *path);

/* Deletes path and everything under it (folders of folders and files; links are removed, not
 * followed). A path that does not exist is fine. */
int sd_remove_tree(const char *path);

/* sd_remove_tree of every entry of folder dir whose name contains part (what killed writes left:
 * "<name>.tmp..." temporaries). */
int sd_remove_entries_containing(const char *dir, const char *part);

#endif
