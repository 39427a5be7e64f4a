//! Disk usage of a sandbox, for the agent's disk-limit check.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most directory entries visited by [`sandbox_disk_usage_bytes`].
pub const MAX_DISK_WALK_ENTRIES: usize = 1_000_000;
/// Deepest directory nesting visited by [`sandbox_disk_usage_bytes`].
pub const MAX_DISK_WALK_DEPTH: usize = 256;

/// Bytes of disk allocated to everything under `path` (like `du -sx`): allocated blocks rather
/// than file lengths, so sparse files count what they really use.
///
/// Symbolic links are not followed, hard-linked files count once, and other filesystems mounted
/// inside the sandbox (e.g. a container rootfs bind-mounting the host's `/usr`) are not entered.
/// The walk is bounded: more than [`MAX_DISK_WALK_ENTRIES`] entries or a nesting deeper than
/// [`MAX_DISK_WALK_DEPTH`] is an error rather than a silently low figure, so a task cannot hide
/// its usage behind millions of files; the caller decides what that means for the limit.
pub fn sandbox_disk_usage_bytes(path: impl AsRef<Path>) -> io::Result<u64> {
    let root = path.as_ref();
    let root_meta = fs::symlink_metadata(root)?;
    let device = root_meta.dev();
    let mut total_bytes = allocated_bytes(&root_meta);
    let mut seen_hard_links = BTreeSet::new();
    let mut stack: Vec<(PathBuf, usize)> = Vec::new();
    if root_meta.is_dir() {
        stack.push((root.to_path_buf(), 0));
    }
    let mut entries = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            entries += 1;
            if entries > MAX_DISK_WALK_ENTRIES {
                return Err(too_big(root, "entries", MAX_DISK_WALK_ENTRIES));
            }
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Deleted between listing and stat: it uses no space any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.dev() != device {
                continue;
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen_hard_links.insert(meta.ino()) {
                continue;
            }
            total_bytes = total_bytes.saturating_add(allocated_bytes(&meta));
            if meta.is_dir() {
                if depth + 1 > MAX_DISK_WALK_DEPTH {
                    return Err(too_big(root, "levels of nesting", MAX_DISK_WALK_DEPTH));
                }
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    Ok(total_bytes)
}

/// `st_blocks` is always in 512-byte units, whatever the filesystem's block size.
fn allocated_bytes(meta: &fs::Metadata) -> u64 {
    meta.blocks().saturating_mul(512)
}

fn too_big(root: &Path, what: &str, limit: usize) -> io::Error {
    tracing::warn!(sandbox = %root.display(), what, limit, "sandbox too big to measure");
    io::Error::other(format!(
        "{} has more than {limit} {what}; not measured",
        root.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nested_files_and_hard_links_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = sandbox_disk_usage_bytes(dir.path()).expect("measure empty");
        let nested = dir.path().join("a/b/c");
        fs::create_dir_all(&nested).expect("mkdir");
        let data = vec![7u8; 256 * 1024];
        fs::write(nested.join("big"), &data).expect("write");
        fs::hard_link(nested.join("big"), dir.path().join("link")).expect("link");
        std::os::unix::fs::symlink("/usr", dir.path().join("usr")).expect("symlink");
        let used = sandbox_disk_usage_bytes(dir.path()).expect("measure");
        assert!(used >= empty + data.len() as u64, "used {used}");
        // Counting the hard link twice, or following the symlink, would at least double it.
        assert!(used < empty + 2 * data.len() as u64, "used {used}");
    }

    #[test]
    fn sparse_file_counts_allocated_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = fs::File::create(dir.path().join("sparse")).expect("create");
        file.set_len(1 << 30).expect("set_len");
        let used = sandbox_disk_usage_bytes(dir.path()).expect("measure");
        assert!(used < 1 << 20, "sparse file counted as {used} bytes");
    }

    #[test]
    fn missing_path_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(sandbox_disk_usage_bytes(dir.path().join("nope")).is_err());
    }
}
