//! The filesystem scenarios about paths: preopens, opening, escaping
//! the preopen, renaming and removing, listing directories, many files.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

use crate::D;
use crate::transcript::{
    data_dir, io_err, kind, list, p, read, read_text, show, step, unit, wshow, wunit,
};

pub(crate) fn preopens() {
    let mut names: Vec<String> = wasi::filesystem::preopens::get_directories()
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    names.sort();
    println!("preopens: {names:?}");
    step("current_dir", show(std::env::current_dir()));
    step("read data/hello.txt", show(read("data/hello.txt")));
    step("read /data/hello.txt", show(read("/data/hello.txt")));
    step("read ./data/hello.txt", show(read("./data/hello.txt")));
    step("read hello.txt", show(read("hello.txt")));
    for (dir, name) in wasi::filesystem::preopens::get_directories() {
        step(&format!("{name} type"), wshow(dir.get_type()));
        step(&format!("{name} flags"), wshow(dir.get_flags()));
    }
}

pub(crate) fn fs_open() {
    let opts = |f: &dyn Fn(&mut OpenOptions) -> &mut OpenOptions, path: &str| {
        let mut o = OpenOptions::new();
        f(&mut o).open(path)
    };
    step("open missing", show(unit(File::open(p("missing.txt")))));
    step(
        "open in a missing dir",
        show(unit(File::create(p("nodir/new.txt")))),
    );
    step(
        "open with a trailing slash",
        show(unit(File::open(p("hello.txt/")))),
    );
    step(
        "open through a file",
        show(unit(File::open(p("hello.txt/x")))),
    );
    step(
        "create new.txt",
        show(File::create(p("new.txt")).and_then(|mut f| f.write_all(b"abc"))),
    );
    step("read new.txt", show(read_text(&p("new.txt"))));
    step(
        "create_new existing",
        show(unit(opts(
            &|o| o.write(true).create_new(true),
            &p("hello.txt"),
        ))),
    );
    step(
        "create_new fresh",
        show(
            opts(&|o| o.write(true).create_new(true), &p("fresh.txt"))
                .and_then(|mut f| f.write_all(b"fresh")),
        ),
    );
    step(
        "create existing (no truncate) and write 1 byte",
        show(
            opts(&|o| o.write(true).create(true), &p("new.txt"))
                .and_then(|mut f| f.write_all(b"X")),
        ),
    );
    step("read new.txt", show(read_text(&p("new.txt"))));
    step(
        "truncate new.txt",
        show(unit(opts(&|o| o.write(true).truncate(true), &p("new.txt")))),
    );
    step(
        "len new.txt",
        show(fs::metadata(p("new.txt")).map(|m| m.len())),
    );
    step(
        "append to a missing file",
        show(opts(&|o| o.append(true), &p("log.txt")).and_then(|mut f| f.write_all(b"lost"))),
    );
    step(
        "append create",
        show(
            opts(&|o| o.append(true).create(true), &p("log.txt"))
                .and_then(|mut f| f.write_all(b"one ")),
        ),
    );
    for word in ["two ", "three", " and more"] {
        step(
            &format!("append {word:?}"),
            show(
                opts(&|o| o.append(true), &p("log.txt"))
                    .and_then(|mut f| f.write_all(word.as_bytes())),
            ),
        );
    }
    step("read log.txt", show(read_text(&p("log.txt"))));
    step(
        "append after a seek",
        show(opts(&|o| o.append(true), &p("log.txt")).and_then(|mut f| {
            f.seek(SeekFrom::Start(0))?;
            f.write_all(b"!")
        })),
    );
    step("read log.txt", show(read_text(&p("log.txt"))));
    step(
        "truncate without write",
        show(unit(opts(
            &|o| o.read(true).truncate(true),
            &p("hello.txt"),
        ))),
    );
    step("open a dir to read", show(unit(File::open(p("sub")))));
    step(
        "read from a dir",
        show(File::open(p("sub")).and_then(|mut f| f.read(&mut [0; 8]))),
    );
    step(
        "open a dir to write",
        show(unit(opts(&|o| o.write(true), &p("sub")))),
    );
    step("create over a dir", show(unit(File::create(p("emptydir")))));
    step(
        "write to a file opened to read",
        show(File::open(p("hello.txt")).and_then(|mut f| f.write(b"no"))),
    );
    step(
        "read from a file opened to write",
        show(opts(&|o| o.write(true), &p("hello.txt")).and_then(|mut f| f.read(&mut [0; 8]))),
    );
    step("open through link-in", show(read_text(&p("link-in"))));
    step(
        "open through link-dir-in",
        show(read_text(&p("link-dir-in/inner.txt"))),
    );
    step(
        "create through link-in",
        show(unit(opts(&|o| o.write(true).create(true), &p("link-in")))),
    );
    step(
        "create_new over link-in",
        show(unit(opts(
            &|o| o.write(true).create_new(true),
            &p("link-in"),
        ))),
    );
    let dir = data_dir();
    let rw = DescriptorFlags::READ | DescriptorFlags::WRITE;
    step(
        "open_at directory flag on a file",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "hello.txt",
            OpenFlags::DIRECTORY,
            DescriptorFlags::READ,
        ))),
    );
    step(
        "open_at directory flag on a dir",
        wshow(
            dir.open_at(
                PathFlags::empty(),
                "sub",
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            )
            .and_then(|d| d.get_type()),
        ),
    );
    step(
        "open_at no-follow on a symlink",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "link-in",
            OpenFlags::empty(),
            DescriptorFlags::READ,
        ))),
    );
    step(
        "open_at follow on a symlink",
        wshow(
            dir.open_at(
                PathFlags::SYMLINK_FOLLOW,
                "link-in",
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .and_then(|d| d.get_type()),
        ),
    );
    step(
        "open_at create+exclusive+truncate",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "excl.txt",
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE,
            rw,
        ))),
    );
    step(
        "open_at directory+create",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "dircreate",
            OpenFlags::DIRECTORY | OpenFlags::CREATE,
            DescriptorFlags::READ,
        ))),
    );
    step(
        "open_at empty path",
        wshow(
            dir.open_at(
                PathFlags::empty(),
                "",
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .and_then(|d| d.get_type()),
        ),
    );
    step(
        "open_at dot",
        wshow(
            dir.open_at(
                PathFlags::empty(),
                ".",
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .and_then(|d| d.get_type()),
        ),
    );
    step(
        "open_at a dir to write",
        wshow(wunit(dir.open_at(
            PathFlags::empty(),
            "sub",
            OpenFlags::empty(),
            rw,
        ))),
    );
    step("create_dir existing", show(fs::create_dir(p("sub"))));
    step(
        "create_dir over a file",
        show(fs::create_dir(p("hello.txt"))),
    );
    step("create_dir fresh", show(fs::create_dir(p("made"))));
    step(
        "create_dir_all nested",
        show(fs::create_dir_all(p("made/a/b/c"))),
    );
    step(
        "create_dir in a missing dir",
        show(fs::create_dir(p("nodir/x"))),
    );
    step(
        "write in made/a/b/c",
        show(fs::write(p("made/a/b/c/f.txt"), "deep")),
    );
}

pub(crate) fn fs_escape() {
    for path in [
        "../outside.txt",
        "sub/../../outside.txt",
        "sub/deeper/../../../outside.txt",
        "link-dir-in/../../outside.txt",
        "link-up",
        "link-out",
        "..",
        "sub/../hello.txt",
        "./sub/./inner.txt",
    ] {
        step(&format!("read {path}"), show(read(&p(path))));
    }
    step("read /outside.txt", show(read("/outside.txt")));
    step("read /etc/passwd", show(read("/etc/passwd")));
    step("read /", show(unit(fs::read_dir("/"))));
    step(
        "metadata /data/..",
        show(fs::metadata(p("..")).map(|m| m.is_dir())),
    );
    step("read_dir /data/..", show(unit(fs::read_dir(p("..")))));
    step(
        "read_dir /data/sub/..",
        show(fs::read_dir(p("sub/..")).map(|d| d.count())),
    );
    step(
        "create /data/../created.txt",
        show(fs::write(p("../created.txt"), "x")),
    );
    step(
        "create_dir /data/../made",
        show(fs::create_dir(p("../made"))),
    );
    step(
        "write through link-up",
        show(fs::write(p("link-up"), "overwritten")),
    );
    step(
        "write through link-out",
        show(fs::write(p("link-out"), "overwritten")),
    );
    step(
        "append through link-up",
        show(unit(OpenOptions::new().append(true).open(p("link-up")))),
    );
    step(
        "rename hello.txt to ../stolen.txt",
        show(fs::rename(p("hello.txt"), p("../stolen.txt"))),
    );
    step(
        "rename ../outside.txt in",
        show(fs::rename(p("../outside.txt"), p("in.txt"))),
    );
    step(
        "hard_link ../outside.txt in",
        show(fs::hard_link(p("../outside.txt"), p("in.txt"))),
    );
    step(
        "hard_link link-up in",
        show(fs::hard_link(p("link-up"), p("linked-up"))),
    );
    step(
        "remove ../outside.txt",
        show(fs::remove_file(p("../outside.txt"))),
    );
    step(
        "metadata link-up (follow)",
        show(unit(fs::metadata(p("link-up")))),
    );
    step(
        "symlink_metadata link-up",
        show(fs::symlink_metadata(p("link-up")).map(|m| kind(m.file_type()))),
    );
    step("read_link link-up", show(fs::read_link(p("link-up"))));
    step("read_link link-out", show(fs::read_link(p("link-out"))));
    step("canonicalize link-in", show(fs::canonicalize(p("link-in"))));
    let dir = data_dir();
    for path in [
        "../outside.txt",
        "/etc/passwd",
        "/data/hello.txt",
        "link-up",
        "sub/../hello.txt",
    ] {
        step(
            &format!("open_at {path}"),
            wshow(wunit(dir.open_at(
                PathFlags::SYMLINK_FOLLOW,
                path,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            ))),
        );
    }
    step(
        "stat_at ..",
        wshow(wunit(dir.stat_at(PathFlags::empty(), ".."))),
    );
    step(
        "symlink_at sym-abs -> /etc/passwd",
        wshow(dir.symlink_at("/etc/passwd", "sym-abs")),
    );
    step(
        "symlink_at sym-up -> ../outside.txt",
        wshow(dir.symlink_at("../outside.txt", "sym-up")),
    );
    step(
        "symlink_at ../sym -> hello.txt",
        wshow(dir.symlink_at("hello.txt", "../sym")),
    );
    step("read sym-up", show(read(&p("sym-up"))));
}

pub(crate) fn fs_remove() {
    step(
        "rename a file onto a nonempty dir",
        show(fs::rename(p("hello.txt"), p("full"))),
    );
    step(
        "rename a file onto an empty dir",
        show(fs::rename(p("hello.txt"), p("emptydir"))),
    );
    step(
        "rename a dir onto a nonempty dir",
        show(fs::rename(p("emptydir"), p("full"))),
    );
    step(
        "rename a dir onto a file",
        show(fs::rename(p("emptydir"), p("empty.txt"))),
    );
    step(
        "rename a dir into itself",
        show(fs::rename(p("sub"), p("sub/deeper/sub"))),
    );
    step("rename missing", show(fs::rename(p("missing"), p("found"))));
    step(
        "rename into a missing dir",
        show(fs::rename(p("empty.txt"), p("nodir/empty.txt"))),
    );
    step(
        "rename with a trailing slash on a file",
        show(fs::rename(p("empty.txt/"), p("e.txt"))),
    );
    step(
        "rename a file onto a file",
        show(fs::rename(p("empty.txt"), p("hello.txt"))),
    );
    step("read hello.txt", show(read_text(&p("hello.txt"))));
    step(
        "rename a file onto itself",
        show(fs::rename(p("hello.txt"), p("hello.txt"))),
    );
    step("mkdir target", show(fs::create_dir(p("target"))));
    step(
        "rename a dir onto an empty dir",
        show(fs::rename(p("emptydir"), p("target"))),
    );
    step(
        "rename a dir to a new name",
        show(fs::rename(p("target"), p("renamed"))),
    );
    step(
        "rename a file into a subdir",
        show(fs::rename(p("hello.txt"), p("renamed/hello.txt"))),
    );
    step(
        "rename a symlink",
        show(fs::rename(p("link-up"), p("link-up-2"))),
    );
    step("read_link link-up-2", show(fs::read_link(p("link-up-2"))));
    step("remove_file a dir", show(fs::remove_file(p("full"))));
    step("remove_dir a nonempty dir", show(fs::remove_dir(p("full"))));
    step(
        "remove_dir a file",
        show(fs::remove_dir(p("full/keep.txt"))),
    );
    step(
        "remove_dir a symlink to a dir",
        show(fs::remove_dir(p("link-dir-in"))),
    );
    step("remove_file missing", show(fs::remove_file(p("missing"))));
    step("remove_dir missing", show(fs::remove_dir(p("missing"))));
    step(
        "remove_file a dangling-outside symlink",
        show(fs::remove_file(p("link-up-2"))),
    );
    step(
        "remove_file a symlink to a dir",
        show(fs::remove_file(p("link-dir-in"))),
    );
    step(
        "remove_file with a trailing slash",
        show(fs::remove_file(p("renamed/hello.txt/"))),
    );
    step("remove_file", show(fs::remove_file(p("renamed/hello.txt"))));
    step(
        "remove_dir the emptied dir",
        show(fs::remove_dir(p("renamed"))),
    );
    step("remove_dir the preopen", show(fs::remove_dir(D)));
    step("remove_dir_all sub", show(fs::remove_dir_all(p("sub"))));
    step("metadata sub", show(unit(fs::metadata(p("sub")))));
    step("read link-in, dangling now", show(read_text(&p("link-in"))));
    step(
        "remove_file the dangling link-in",
        show(fs::remove_file(p("link-in"))),
    );
    let dir = data_dir();
    step("unlink_file_at a dir", wshow(dir.unlink_file_at("full")));
    step(
        "remove_directory_at a file",
        wshow(dir.remove_directory_at("full/keep.txt")),
    );
    step("remove_directory_at .", wshow(dir.remove_directory_at(".")));
    step("rename_at across descriptors", {
        let full = dir.open_at(
            PathFlags::empty(),
            "full",
            OpenFlags::DIRECTORY,
            DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
        );
        wshow(full.and_then(|full| full.rename_at("keep.txt", &dir, "kept.txt")))
    });
}

pub(crate) fn fs_dir() {
    list("read_dir /data", D);
    list("read_dir /data/sub", &p("sub"));
    list("read_dir /data/link-dir-in", &p("link-dir-in"));
    list("read_dir /data/.", &p("."));
    list("read_dir /data/sub/..", &p("sub/.."));
    list("read_dir /data/emptydir", &p("emptydir"));
    step("read_dir a file", show(unit(fs::read_dir(p("hello.txt")))));
    step("read_dir missing", show(unit(fs::read_dir(p("missing")))));
    step(
        "read_dir a symlink outside",
        show(unit(fs::read_dir(p("link-up")))),
    );
    let dir = data_dir();
    for (label, d) in [
        ("/data", Ok(data_dir())),
        (
            "sub",
            dir.open_at(
                PathFlags::empty(),
                "sub",
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            ),
        ),
        (
            "emptydir",
            dir.open_at(
                PathFlags::empty(),
                "emptydir",
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            ),
        ),
    ] {
        let entries = d.and_then(|d| {
            let stream = d.read_directory()?;
            let mut all = Vec::new();
            while let Some(e) = stream.read_directory_entry()? {
                all.push((e.name, format!("{:?}", e.type_)));
            }
            all.sort();
            Ok(all)
        });
        match entries {
            Ok(all) => {
                println!("read-directory {label}: {} entries", all.len());
                println!(
                    "  has . or ..: {}",
                    all.iter().any(|(n, _)| n == "." || n == "..")
                );
                for (name, t) in all {
                    println!("  {name}: {t}");
                }
            }
            Err(e) => println!("read-directory {label}: Err({})", e.name()),
        }
    }
    let file = dir.open_at(
        PathFlags::empty(),
        "hello.txt",
        OpenFlags::empty(),
        DescriptorFlags::READ,
    );
    step(
        "read-directory on a file",
        wshow(file.and_then(|f| f.read_directory()).map(|_| ())),
    );
    step(
        "create_dir then list",
        show(fs::create_dir(p("emptydir/new"))),
    );
    list("read_dir /data/emptydir", &p("emptydir"));
    // A listing while entries are added: the names seen are a subset.
    let mut seen = 0;
    let r = fs::read_dir(p("emptydir")).and_then(|it| {
        for (i, e) in it.enumerate() {
            e?;
            seen += 1;
            fs::write(p(&format!("emptydir/added-{i}")), "")?;
        }
        Ok(())
    });
    step("list while adding", show(r));
    println!("  saw at least the first entry: {}", seen >= 1);
    list("read_dir /data/emptydir", &p("emptydir"));
}

/// Opens `/data/hello.txt` `n` times, keeping every file open; stops at
/// the first failure.
pub(crate) fn fs_many(n: usize) {
    let mut open = Vec::with_capacity(n);
    let mut failure = None;
    for _ in 0..n {
        match File::open(p("hello.txt")) {
            Ok(f) => open.push(f),
            Err(e) => {
                failure = Some(io_err(&e));
                break;
            }
        }
    }
    match failure {
        None => println!("opened {n} files"),
        Some(e) => println!("opened {} of {n} files, then {e}", open.len()),
    }
    drop(open);
    step("open after closing them", show(read(&p("hello.txt"))));
}
