//! The filesystem scenarios about files' data and metadata: times,
//! links, sizes, seeks, advice, and a read-only preopen.

use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasi::filesystem::types::{Advice, Descriptor, DescriptorFlags, OpenFlags, PathFlags};

use crate::D;
use crate::transcript::{
    data_dir, io_err, kind, list, p, read, read_text, show, step, unit, wshow, wunit,
};

pub(crate) fn fs_meta() {
    for path in [
        "hello.txt",
        "empty.txt",
        "sub",
        "sub/deeper/leaf.bin",
        "link-in",
        "link-dir-in",
        "link-up",
        "link-out",
        "missing",
    ] {
        let m = fs::metadata(p(path)).map(|m| {
            format!(
                "{} len {}",
                kind(m.file_type()),
                if m.is_dir() { 0 } else { m.len() }
            )
        });
        step(&format!("metadata {path}"), show(m));
        let m = fs::symlink_metadata(p(path)).map(|m| {
            format!(
                "{} len {}",
                kind(m.file_type()),
                if m.is_dir() { 0 } else { m.len() }
            )
        });
        step(&format!("symlink_metadata {path}"), show(m));
    }
    step("hash hello.txt", show(read(&p("hello.txt"))));
    step("hash leaf.bin", show(read(&p("sub/deeper/leaf.bin"))));
    step(
        "file metadata",
        show(
            File::open(p("hello.txt"))
                .and_then(|f| f.metadata())
                .map(|m| m.len()),
        ),
    );
    let t1 = UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    let t2 = UNIX_EPOCH + Duration::new(1_500_000_000, 0);
    step(
        "set_times on stamped.txt",
        show(
            File::create(p("stamped.txt"))
                .and_then(|f| f.set_times(FileTimes::new().set_modified(t1).set_accessed(t2))),
        ),
    );
    let since = |t: io::Result<SystemTime>| {
        t.map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| (d.as_secs(), d.subsec_nanos()))
                .ok()
        })
    };
    step(
        "modified",
        show(fs::metadata(p("stamped.txt")).and_then(|m| since(m.modified()))),
    );
    step(
        "accessed",
        show(fs::metadata(p("stamped.txt")).and_then(|m| since(m.accessed()))),
    );
    step(
        "set_modified on a file opened to read",
        show(File::open(p("hello.txt")).and_then(|f| f.set_modified(t1))),
    );
    step(
        "modified hello.txt",
        show(fs::metadata(p("hello.txt")).and_then(|m| since(m.modified()))),
    );
    step(
        "set_modified on a dir",
        show(File::open(p("emptydir")).and_then(|f| f.set_modified(t2))),
    );
    step(
        "modified emptydir",
        show(fs::metadata(p("emptydir")).and_then(|m| since(m.modified()))),
    );
    let dir = data_dir();
    use wasi::filesystem::types::NewTimestamp;
    let ts = wasi::clocks::wall_clock::Datetime {
        seconds: 1_400_000_000,
        nanoseconds: 5,
    };
    step(
        "set_times_at no-follow on link-in",
        wshow(dir.set_times_at(
            PathFlags::empty(),
            "link-in",
            NewTimestamp::NoChange,
            NewTimestamp::Timestamp(ts),
        )),
    );
    step(
        "link-in's own mtime",
        wshow(dir.stat_at(PathFlags::empty(), "link-in").map(|s| {
            s.data_modification_timestamp
                .map(|t| (t.seconds, t.nanoseconds))
        })),
    );
    step(
        "set_times_at follow on link-in",
        wshow(dir.set_times_at(
            PathFlags::SYMLINK_FOLLOW,
            "link-in",
            NewTimestamp::NoChange,
            NewTimestamp::Timestamp(ts),
        )),
    );
    step(
        "hello.txt's mtime",
        wshow(dir.stat_at(PathFlags::empty(), "hello.txt").map(|s| {
            s.data_modification_timestamp
                .map(|t| (t.seconds, t.nanoseconds))
        })),
    );
    step(
        "set_times_at on link-up (follow)",
        wshow(dir.set_times_at(
            PathFlags::SYMLINK_FOLLOW,
            "link-up",
            NewTimestamp::NoChange,
            NewTimestamp::Timestamp(ts),
        )),
    );
    for path in ["hello.txt", "sub", "link-in", "link-up"] {
        step(
            &format!("stat_at {path}"),
            wshow(
                dir.stat_at(PathFlags::empty(), path)
                    .map(|s| (s.type_, s.link_count, s.size)),
            ),
        );
    }
    let open = |path: &str| {
        dir.open_at(
            PathFlags::empty(),
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
    };
    let hash = |d: Descriptor| d.metadata_hash().map(|h| (h.lower, h.upper));
    let same = open("hello.txt").and_then(|a| {
        Ok((
            hash(a)?,
            hash(open("hello.txt")?)?,
            hash(open("empty.txt")?)?,
        ))
    });
    step(
        "metadata hashes: same file equal, other differs",
        wshow(same.map(|(a, b, c)| (a == b, a != c))),
    );
    let same = open("hello.txt").and_then(|a| {
        Ok((
            a.is_same_object(&open("hello.txt")?),
            a.is_same_object(&open("empty.txt")?),
        ))
    });
    step("is_same_object: same, other", wshow(same));
    step(
        "metadata_hash_at same as open",
        wshow(open("sub/inner.txt").and_then(|f| {
            let at = dir.metadata_hash_at(PathFlags::empty(), "sub/inner.txt")?;
            Ok(hash(f)? == (at.lower, at.upper))
        })),
    );
    step("stat of the preopen", wshow(dir.stat().map(|s| s.type_)));
}

pub(crate) fn fs_link() {
    let dir = data_dir();
    let links = |path: &str| wshow(dir.stat_at(PathFlags::empty(), path).map(|s| s.link_count));
    step(
        "hard_link hello.txt hl.txt",
        show(fs::hard_link(p("hello.txt"), p("hl.txt"))),
    );
    step("hl.txt", show(read(&p("hl.txt"))));
    step("link count hello.txt", links("hello.txt"));
    step("link count hl.txt", links("hl.txt"));
    step(
        "append through hl.txt",
        show(
            OpenOptions::new()
                .append(true)
                .open(p("hl.txt"))
                .and_then(|mut f| f.write_all(b"more\n")),
        ),
    );
    step("hello.txt", show(read_text(&p("hello.txt"))));
    step(
        "hard_link onto an existing file",
        show(fs::hard_link(p("hello.txt"), p("empty.txt"))),
    );
    step(
        "hard_link a dir",
        show(fs::hard_link(p("sub"), p("sub-link"))),
    );
    step(
        "hard_link missing",
        show(fs::hard_link(p("missing"), p("m-link"))),
    );
    step(
        "hard_link into a missing dir",
        show(fs::hard_link(p("hello.txt"), p("nodir/x"))),
    );
    step(
        "hard_link into a subdir",
        show(fs::hard_link(p("hello.txt"), p("sub/deeper/hl2.txt"))),
    );
    step("link count hello.txt", links("hello.txt"));
    step(
        "hard_link link-in (the symlink itself)",
        show(fs::hard_link(p("link-in"), p("link-in-hl"))),
    );
    step(
        "link-in-hl",
        show(fs::symlink_metadata(p("link-in-hl")).map(|m| kind(m.file_type()))),
    );
    step(
        "link_at follow link-in",
        wshow(dir.link_at(PathFlags::SYMLINK_FOLLOW, "link-in", &dir, "followed-hl")),
    );
    step(
        "followed-hl",
        show(fs::symlink_metadata(p("followed-hl")).map(|m| kind(m.file_type()))),
    );
    step("remove hl.txt", show(fs::remove_file(p("hl.txt"))));
    step("link count hello.txt", links("hello.txt"));
    step(
        "symlink_at sym -> hello.txt",
        wshow(dir.symlink_at("hello.txt", "sym")),
    );
    step("read sym", show(read(&p("sym"))));
    step("read_link sym", show(fs::read_link(p("sym"))));
    step(
        "symlink_at sym again",
        wshow(dir.symlink_at("hello.txt", "sym")),
    );
    step(
        "symlink_at dangling -> nothing",
        wshow(dir.symlink_at("nothing", "dangling")),
    );
    step("read dangling", show(read(&p("dangling"))));
    step(
        "create through dangling",
        show(fs::write(p("dangling"), "made")),
    );
    step(
        "symlink_at sub/up -> ../hello.txt",
        wshow(dir.symlink_at("../hello.txt", "sub/up")),
    );
    step("read sub/up", show(read(&p("sub/up"))));
    step(
        "symlink_at loop-a -> loop-b",
        wshow(dir.symlink_at("loop-b", "loop-a")),
    );
    step(
        "symlink_at loop-b -> loop-a",
        wshow(dir.symlink_at("loop-a", "loop-b")),
    );
    step("read loop-a", show(read(&p("loop-a"))));
    step("read_link hello.txt", show(fs::read_link(p("hello.txt"))));
    step(
        "readlink_at link-dir-in",
        wshow(dir.readlink_at("link-dir-in")),
    );
}

pub(crate) fn fs_size() {
    step(
        "write sized.bin",
        show(fs::write(p("sized.bin"), "0123456789")),
    );
    let set_len = |n: u64| {
        OpenOptions::new()
            .write(true)
            .open(p("sized.bin"))
            .and_then(|f| f.set_len(n))
    };
    step("set_len 20", show(set_len(20)));
    step("sized.bin", show(fs::read(p("sized.bin"))));
    step("set_len 4", show(set_len(4)));
    step("sized.bin", show(read_text(&p("sized.bin"))));
    step("set_len 0", show(set_len(0)));
    step("len", show(fs::metadata(p("sized.bin")).map(|m| m.len())));
    step(
        "set_len on a file opened to read",
        show(File::open(p("hello.txt")).and_then(|f| f.set_len(1))),
    );
    step("hello.txt", show(read_text(&p("hello.txt"))));

    let mut f = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(p("seek.bin"))
    {
        Ok(f) => f,
        Err(e) => return println!("open seek.bin: {}", io_err(&e)),
    };
    step("write abcdef", show(f.write_all(b"abcdef")));
    step("seek start 2", show(f.seek(SeekFrom::Start(2))));
    let mut two = [0u8; 2];
    step(
        "read 2",
        show(
            f.read_exact(&mut two)
                .map(|()| String::from_utf8_lossy(&two).into_owned()),
        ),
    );
    step("seek current -1", show(f.seek(SeekFrom::Current(-1))));
    step("seek end -2", show(f.seek(SeekFrom::End(-2))));
    let mut rest = String::new();
    step(
        "read to end",
        show(f.read_to_string(&mut rest).map(|_| rest.clone())),
    );
    step(
        "seek before the start",
        show(f.seek(SeekFrom::Current(-100))),
    );
    step("stream_position", show(f.stream_position()));
    step(
        "seek end +4 and write Z",
        show(f.seek(SeekFrom::End(4)).and_then(|_| f.write_all(b"Z"))),
    );
    drop(f);
    step("seek.bin", show(fs::read(p("seek.bin"))));

    let dir = data_dir();
    let rw = DescriptorFlags::READ | DescriptorFlags::WRITE;
    match dir.open_at(PathFlags::empty(), "seek.bin", OpenFlags::empty(), rw) {
        Ok(d) => {
            step("pwrite XY at 1", wshow(d.write(b"XY", 1)));
            step(
                "pread 3 at 0",
                wshow(
                    d.read(3, 0)
                        .map(|(b, end)| (String::from_utf8_lossy(&b).into_owned(), end)),
                ),
            );
            step("pread at the end", wshow(d.read(3, 11)));
            step("pread past the end", wshow(d.read(3, 1000)));
            step("pwrite past the end", wshow(d.write(b"!", 20)));
            step("size", wshow(d.stat().map(|s| s.size)));
            step("set-size 2", wshow(d.set_size(2)));
            step("pread all", wshow(d.read(100, 0)));
            for advice in [
                Advice::Normal,
                Advice::Sequential,
                Advice::Random,
                Advice::WillNeed,
                Advice::DontNeed,
                Advice::NoReuse,
            ] {
                step(
                    &format!("advise {advice:?}"),
                    wshow(d.advise(0, 100, advice)),
                );
            }
            step(
                "advise past the end",
                wshow(d.advise(1 << 40, 10, Advice::Normal)),
            );
            step("sync", wshow(d.sync()));
            step("sync-data", wshow(d.sync_data()));
            step("flags", wshow(d.get_flags()));
            step("type", wshow(d.get_type()));
        }
        Err(e) => println!("open_at seek.bin: Err({})", e.name()),
    }
    match dir.open_at(
        PathFlags::empty(),
        "hello.txt",
        OpenFlags::empty(),
        DescriptorFlags::READ,
    ) {
        Ok(d) => {
            step("pwrite on a read-only descriptor", wshow(d.write(b"no", 0)));
            step("set-size on a read-only descriptor", wshow(d.set_size(0)));
            step(
                "advise on a read-only descriptor",
                wshow(d.advise(0, 0, Advice::Sequential)),
            );
            step("flags", wshow(d.get_flags()));
        }
        Err(e) => println!("open_at hello.txt: Err({})", e.name()),
    }
    step(
        "advise on a directory",
        wshow(dir.advise(0, 0, Advice::Normal)),
    );
    step("pread on a directory", wshow(dir.read(1, 0)));
    step("set-size on a directory", wshow(dir.set_size(0)));
    step("sync a directory", wshow(dir.sync()));
}

pub(crate) fn fs_readonly() {
    step("read hello.txt", show(read(&p("hello.txt"))));
    list("read_dir /data", D);
    step(
        "metadata hello.txt",
        show(fs::metadata(p("hello.txt")).map(|m| m.len())),
    );
    step("create", show(fs::write(p("new.txt"), "x")));
    step(
        "open existing to write",
        show(unit(OpenOptions::new().write(true).open(p("hello.txt")))),
    );
    step(
        "open existing to append",
        show(unit(OpenOptions::new().append(true).open(p("hello.txt")))),
    );
    step(
        "truncate",
        show(unit(
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(p("hello.txt")),
        )),
    );
    step("create_dir", show(fs::create_dir(p("made"))));
    step("remove_file", show(fs::remove_file(p("hello.txt"))));
    step("remove_dir", show(fs::remove_dir(p("emptydir"))));
    step("rename", show(fs::rename(p("hello.txt"), p("moved.txt"))));
    step(
        "hard_link",
        show(fs::hard_link(p("hello.txt"), p("hl.txt"))),
    );
    step(
        "set_len",
        show(File::open(p("hello.txt")).and_then(|f| f.set_len(1))),
    );
    step(
        "set_modified",
        show(
            File::open(p("hello.txt"))
                .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))),
        ),
    );
    step("read link-in", show(read(&p("link-in"))));
    let dir = data_dir();
    step("preopen flags", wshow(dir.get_flags()));
    step(
        "open_at to write",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "hello.txt",
            OpenFlags::empty(),
            DescriptorFlags::READ | DescriptorFlags::WRITE,
        ))),
    );
    step(
        "open_at create",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "new.txt",
            OpenFlags::CREATE,
            DescriptorFlags::READ,
        ))),
    );
    step(
        "open_at to mutate a directory",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "sub",
            OpenFlags::DIRECTORY,
            DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
        ))),
    );
    step("symlink_at", wshow(dir.symlink_at("hello.txt", "sym")));
    step(
        "set_times_at",
        wshow(dir.set_times_at(
            PathFlags::empty(),
            "hello.txt",
            wasi::filesystem::types::NewTimestamp::Now,
            wasi::filesystem::types::NewTimestamp::Now,
        )),
    );
    match dir.open_at(
        PathFlags::empty(),
        "hello.txt",
        OpenFlags::empty(),
        DescriptorFlags::READ,
    ) {
        Ok(d) => {
            step(
                "pread",
                wshow(
                    d.read(5, 0)
                        .map(|(b, end)| (String::from_utf8_lossy(&b).into_owned(), end)),
                ),
            );
            step("advise", wshow(d.advise(0, 0, Advice::Sequential)));
            step("sync", wshow(d.sync()));
        }
        Err(e) => println!("open_at hello.txt: Err({})", e.name()),
    }
}
