//! The memory this process may use, and how much it uses, as the kernel counts them.
//!
//! The limit is the smallest memory limit of the process's own cgroup and of every ancestor,
//! in the cgroup v2 hierarchy (`memory.max`; systemd's `MemoryMax=` is that file of the unit's
//! cgroup) and the cgroup v1 `memory` hierarchy (`memory.limit_in_bytes`), found through
//! `/proc/self/cgroup` and `/proc/self/mountinfo`. Every path is read under a root directory
//! (`/` in production) so tests can hand in a fake tree.

use std::path::{Path, PathBuf};

/// Limits at or above this many bytes mean "no limit" (cgroup v1 writes `PAGE_COUNTER_MAX`
/// pages, about 2^63 bytes, for an unset limit).
const UNLIMITED: u64 = 1 << 60;

/// A memory limit and the file it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Bytes.
    pub bytes: u64,
    /// Where it came from: a cgroup file, or `/proc/meminfo`.
    pub source: PathBuf,
}

/// The smallest cgroup memory limit on this process (its own cgroup or any ancestor, v1 or
/// v2); `None` when no cgroup limits it.
pub fn cgroup_limit(root: &Path) -> Option<Limit> {
    let cgroups = std::fs::read_to_string(under(root, "/proc/self/cgroup")).ok()?;
    let mountinfo =
        std::fs::read_to_string(under(root, "/proc/self/mountinfo")).unwrap_or_default();
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    let mut best: Option<Limit> = None;
    for line in cgroups.lines() {
        // hierarchy-ID:controller-list:cgroup-path
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (v2, file) = if id == "0" && controllers.is_empty() {
            (true, "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (false, "memory.limit_in_bytes")
        } else {
            continue;
        };
        for mount in mounts.iter().filter(|m| m.is_memory_hierarchy(v2)) {
            let Some(dir) = mount.dir_of(path) else {
                continue;
            };
            // The process's own cgroup, then each ancestor up to the hierarchy's root.
            let top = under(root, &mount.point);
            let mut dir = under(root, &dir);
            loop {
                let f = dir.join(file);
                if let Some(bytes) = read_limit(&f)
                    && best.as_ref().is_none_or(|b| bytes < b.bytes)
                {
                    best = Some(Limit { bytes, source: f });
                }
                if dir == top || !dir.pop() || !dir.starts_with(&top) {
                    break;
                }
            }
        }
    }
    best
}

/// The machine's memory (`MemTotal` in `/proc/meminfo`).
pub fn machine_memory(root: &Path) -> Option<Limit> {
    let source = under(root, "/proc/meminfo");
    let info = std::fs::read_to_string(&source).ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(Limit {
        bytes: kib * 1024,
        source,
    })
}

/// What `limit_percentage` is a percentage of: the cgroup limit, or the machine's memory where
/// that is smaller or there is none (as the OpenTelemetry Collector does).
pub fn available_memory(root: &Path) -> Option<Limit> {
    match (cgroup_limit(root), machine_memory(root)) {
        (Some(c), Some(m)) if m.bytes < c.bytes => Some(m),
        (Some(c), _) => Some(c),
        (None, m) => m,
    }
}

/// Resident memory of this process: resident pages in `/proc/self/statm` times the real page
/// size.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The kernel's page size (4 KiB on x86_64, often 16 or 64 KiB on arm64).
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// A limit file's value; `None` when missing, unreadable, `max` or effectively unlimited.
fn read_limit(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: u64 = text.trim().parse().ok()?;
    (v < UNLIMITED).then_some(v)
}

/// `path` (absolute) inside `root`.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// One cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug)]
struct Mount {
    /// The cgroup path mounted there (`/` unless a namespace or bind mount shows a subtree).
    root: String,
    /// Where it is mounted.
    point: String,
    /// `cgroup2`, or `cgroup` with the v1 controllers in `options`.
    fstype: String,
    options: String,
}

impl Mount {
    /// `ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTS`
    fn parse(line: &str) -> Option<Self> {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let fstype = right.next()?.to_string();
        if fstype != "cgroup" && fstype != "cgroup2" {
            return None;
        }
        let _source = right.next();
        Some(Self {
            root: unescape(left.get(3)?),
            point: unescape(left.get(4)?),
            fstype,
            options: right.next().unwrap_or("").to_string(),
        })
    }

    fn is_memory_hierarchy(&self, v2: bool) -> bool {
        if v2 {
            self.fstype == "cgroup2"
        } else {
            self.fstype == "cgroup" && self.options.split(',').any(|o| o == "memory")
        }
    }

    /// The directory of cgroup `path` under this mount; `None` when the mount shows a subtree
    /// that does not hold it.
    fn dir_of(&self, path: &str) -> Option<String> {
        let rel = if self.root == "/" {
            path
        } else {
            match path.strip_prefix(self.root.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                // A namespaced view shows the process at the mount's root.
                _ if path == "/" => "",
                _ => return None,
            }
        };
        Some(format!(
            "{}/{}",
            self.point.trim_end_matches('/'),
            rel.trim_start_matches('/')
        ))
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b.get(i + 1..i + 4) {
            Some(&[x, y, z])
                if b[i] == b'\\'
                    && (b'0'..=b'3').contains(&x)
                    && [y, z].iter().all(|d| (b'0'..=b'7').contains(d)) =>
            {
                out.push(((x - b'0') << 6) | ((y - b'0') << 3) | (z - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root: `files` are (absolute path, content).
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = under(dir.path(), path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
    const V1_MOUNTS: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree: 1 kB\n";

    #[test]
    fn v2_own_cgroup() {
        let t = tree(&[
            ("/proc/self/cgroup", "0::/system.slice/wasmcol.service\n"),
            ("/proc/self/mountinfo", V2_MOUNT),
            ("/sys/fs/cgroup/memory.max", "max\n"),
            ("/sys/fs/cgroup/system.slice/memory.max", "max\n"),
            (
                "/sys/fs/cgroup/system.slice/wasmcol.service/memory.max",
                "536870912\n",
            ),
        ]);
        let l = cgroup_limit(t.path()).unwrap();
        assert_eq!(l.bytes, 512 << 20);
        assert!(
            l.source
                .ends_with("system.slice/wasmcol.service/memory.max")
        );
    }

    #[test]
    fn v2_nested_takes_the_smallest_ancestor() {
        let t = tree(&[
            ("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n"),
            ("/proc/self/mountinfo", V2_MOUNT),
            ("/sys/fs/cgroup/kubepods/memory.max", "8589934592\n"),
            ("/sys/fs/cgroup/kubepods/pod1/memory.max", "268435456\n"),
            ("/sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n"),
        ]);
        let l = cgroup_limit(t.path()).unwrap();
        assert_eq!(l.bytes, 256 << 20);
        assert!(l.source.ends_with("kubepods/pod1/memory.max"));
    }

    #[test]
    fn v1_memory_controller_and_its_mount() {
        let t = tree(&[
            (
                "/proc/self/cgroup",
                "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n",
            ),
            ("/proc/self/mountinfo", V1_MOUNTS),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "1073741824\n",
            ),
            // Not the memory controller: ignored.
            ("/sys/fs/cgroup/cpu/memory.limit_in_bytes", "1\n"),
        ]);
        let l = cgroup_limit(t.path()).unwrap();
        assert_eq!(l.bytes, 1 << 30);
        assert!(
            l.source
                .ends_with("memory/process_api/abc/memory.limit_in_bytes")
        );
    }

    #[test]
    fn mount_point_from_mountinfo_and_namespaced_root() {
        // Mounted elsewhere, showing only the subtree /docker/c1 (no cgroup namespace).
        let t = tree(&[
            ("/proc/self/cgroup", "0::/docker/c1\n"),
            (
                "/proc/self/mountinfo",
                "50 40 0:26 /docker/c1 /mnt/my\\040cg ro - cgroup2 cgroup2 rw\n",
            ),
            ("/mnt/my cg/memory.max", "104857600\n"),
        ]);
        assert_eq!(cgroup_limit(t.path()).unwrap().bytes, 100 << 20);
    }

    #[test]
    fn a_mount_of_another_subtree_is_skipped() {
        let t = tree(&[
            ("/proc/self/cgroup", "5:cpu,memory:/a/b\n"),
            (
                "/proc/self/mountinfo",
                "60 40 0:40 /other /x rw - cgroup cgroup rw,cpu,memory\n\
                 61 40 0:40 / /y rw - cgroup cgroup rw,cpu,memory\n",
            ),
            ("/x/memory.limit_in_bytes", "1048576\n"),
            ("/x/a/b/memory.limit_in_bytes", "1048576\n"),
            ("/y/a/memory.limit_in_bytes", "734003200\n"),
        ]);
        let l = cgroup_limit(t.path()).unwrap();
        assert_eq!(l.bytes, 700 << 20);
        assert!(l.source.ends_with("y/a/memory.limit_in_bytes"));
    }

    #[test]
    fn unlimited_everywhere_is_none() {
        let t = tree(&[
            ("/proc/self/cgroup", "4:memory:/a\n0::/a\n"),
            ("/proc/self/mountinfo", V1_MOUNTS),
            (
                "/sys/fs/cgroup/memory/a/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("/sys/fs/cgroup/unified/a/memory.max", "max\n"),
            ("/proc/meminfo", MEMINFO),
        ]);
        assert_eq!(cgroup_limit(t.path()), None);
        let a = available_memory(t.path()).unwrap();
        assert_eq!(a.bytes, 16384000 * 1024);
        assert!(a.source.ends_with("proc/meminfo"));
    }

    #[test]
    fn missing_files_are_no_limit() {
        // Hybrid v2 mount without the memory controller: no memory.max files at all.
        let t = tree(&[
            ("/proc/self/cgroup", "0::/x/y\n"),
            ("/proc/self/mountinfo", V2_MOUNT),
            ("/proc/meminfo", MEMINFO),
        ]);
        assert_eq!(cgroup_limit(t.path()), None);
        // No /proc/self/cgroup at all.
        let empty = tree(&[("/proc/meminfo", MEMINFO)]);
        assert_eq!(cgroup_limit(empty.path()), None);
        assert_eq!(
            available_memory(empty.path()).unwrap().bytes,
            16384000 * 1024
        );
    }

    #[test]
    fn a_limit_above_the_machine_is_the_machine() {
        let t = tree(&[
            ("/proc/self/cgroup", "0::/big\n"),
            ("/proc/self/mountinfo", V2_MOUNT),
            ("/sys/fs/cgroup/big/memory.max", "1099511627776\n"),
            ("/proc/meminfo", MEMINFO),
        ]);
        assert_eq!(cgroup_limit(t.path()).unwrap().bytes, 1 << 40);
        assert_eq!(available_memory(t.path()).unwrap().bytes, 16384000 * 1024);
    }

    #[test]
    fn v1_and_v2_together_take_the_smaller() {
        let t = tree(&[
            ("/proc/self/cgroup", "4:memory:/a\n0::/a\n"),
            ("/proc/self/mountinfo", V1_MOUNTS),
            (
                "/sys/fs/cgroup/memory/a/memory.limit_in_bytes",
                "300000000\n",
            ),
            ("/sys/fs/cgroup/unified/a/memory.max", "200003584\n"),
        ]);
        assert_eq!(cgroup_limit(t.path()).unwrap().bytes, 200003584);
    }

    #[test]
    fn real_page_size_and_rss() {
        let ps = page_size();
        assert!(ps.is_power_of_two() && ps >= 4096, "{ps}");
        assert!(resident_bytes().unwrap() > 1 << 20);
    }
}
