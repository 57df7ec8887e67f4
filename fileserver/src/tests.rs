extern crate std;

use super::*;
use alloc::vec;
use ipc_proto::pager::{PagerReply, PagerRequest};

const MB: u64 = 1 << 20;

fn path(p: &str) -> FilePath {
    FilePath::new(p).unwrap()
}

fn lookup<'f>(fs: &'f mut RamFs, p: &str, write: bool, uid: u32) -> PagerResponse<'f> {
    fs.handle(&PagerRequest::Lookup {
        path: path(p),
        write,
        uid,
        gid: uid,
    })
}

fn key(resp: PagerResponse<'_>) -> ObjectKey {
    match resp {
        Ok(PagerReply::Object { object, .. }) => object,
        other => panic!("not an object: {other:?}"),
    }
}

fn page_in(fs: &mut RamFs, object: ObjectKey, offset: u64) -> Result<Vec<u8>, Errno> {
    match fs.handle(&PagerRequest::PageIn { object, offset })? {
        PagerReply::Data(d) => Ok(d.as_slice().to_vec()),
        other => panic!("not data: {other:?}"),
    }
}

/// A ustar header for a regular file (`b'0'`) or directory (`b'5'`), with its checksum.
fn header(name: &str, kind: u8, size: usize, mode: u32) -> [u8; 512] {
    let data = vec![0u8; size];
    let entry = tar::Entry {
        name,
        kind,
        mode,
        uid: 0,
        gid: 0,
        data: &data,
    };
    let image = tar::write(&[entry]).unwrap();
    image[..512].try_into().unwrap()
}

fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&header("etc/", b'5', 0, 0o755));
    for (name, data) in files {
        t.extend_from_slice(&header(name, b'0', data.len(), 0o644));
        t.extend_from_slice(data);
        t.resize(t.len().div_ceil(512) * 512, 0);
    }
    t.extend_from_slice(&[0; 1024]);
    t
}

#[test]
fn pages_a_file_in_with_a_short_last_page() {
    let mut fs = RamFs::new(MB);
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    fs.create("/data/blob", 0o644, 1000, 1000, &data).unwrap();
    let k = key(lookup(&mut fs, "/data/blob", false, 1000));
    assert_eq!(page_in(&mut fs, k, 0).unwrap(), data[..4096]);
    assert_eq!(page_in(&mut fs, k, 8192).unwrap(), data[8192..]);
    assert_eq!(page_in(&mut fs, k, 12288), Err(Errno::ENXIO));
    assert_eq!(page_in(&mut fs, k, 100), Err(Errno::EINVAL));
    assert_eq!(page_in(&mut fs, ObjectKey(999), 0), Err(Errno::EBADF));
}

#[test]
fn lookup_applies_mode_bits_and_reports_the_file() {
    let mut fs = RamFs::new(MB);
    fs.create("/secret", 0o640, 1000, 50, b"x").unwrap();
    assert!(matches!(
        lookup(&mut fs, "/secret", true, 1000),
        Ok(PagerReply::Object {
            size: 1,
            mode: 0o640,
            uid: 1000,
            gid: 50,
            ..
        })
    ));
    // Group reads only; others nothing; root everything.
    let group = fs.handle(&PagerRequest::Lookup {
        path: path("/secret"),
        write: false,
        uid: 7,
        gid: 50,
    });
    assert!(group.is_ok());
    let group_write = fs.handle(&PagerRequest::Lookup {
        path: path("/secret"),
        write: true,
        uid: 7,
        gid: 50,
    });
    assert_eq!(group_write, Err(Errno::EACCES));
    assert_eq!(lookup(&mut fs, "/secret", false, 7), Err(Errno::EACCES));
    assert!(lookup(&mut fs, "/secret", true, 0).is_ok());
    assert_eq!(lookup(&mut fs, "/nothing", false, 0), Err(Errno::ENOENT));
}

#[test]
fn write_back_and_size_changes_reach_the_file() {
    let mut fs = RamFs::new(3 * 4096);
    let k = fs.create("/f", 0o600, 1, 1, &[1u8; 5000]).unwrap();
    let page = PageData::new(&[9u8; 4096]).unwrap();
    let out = |offset| PagerRequest::PageOut {
        object: k,
        offset,
        data: page,
    };
    assert_eq!(fs.handle(&out(4096)), Ok(PagerReply::Done));
    // Only the 904 bytes inside the file were written: write-back never grows it.
    let f = fs.contents("/f").unwrap();
    assert_eq!(f.len(), 5000);
    assert!(f[..4096].iter().all(|&b| b == 1) && f[4096..].iter().all(|&b| b == 9));
    assert_eq!(fs.handle(&out(8192)), Ok(PagerReply::Done));
    assert_eq!(fs.contents("/f").unwrap().len(), 5000);
    let size = |size| PagerRequest::SetSize { object: k, size };
    assert_eq!(fs.handle(&size(6000)), Ok(PagerReply::Done));
    assert_eq!(&fs.contents("/f").unwrap()[5000..], &[0u8; 1000][..]);
    assert_eq!(fs.handle(&size(3 * 4096 + 1)), Err(Errno::EFBIG));
    assert_eq!(fs.handle(&size(10)), Ok(PagerReply::Done));
    assert_eq!(fs.contents("/f").unwrap(), &[1u8; 10][..]);
    assert_eq!(
        fs.handle(&PagerRequest::Release { object: k }),
        Ok(PagerReply::Done)
    );
    assert_eq!(
        fs.handle(&PagerRequest::Release {
            object: ObjectKey(77)
        }),
        Err(Errno::EBADF)
    );
}

#[test]
fn files_from_the_tar_image_are_read_only() {
    let mut fs = RamFs::new(MB);
    let motd = b"welcome to the microkernel\n";
    let big = vec![7u8; 5000];
    let image = archive(&[("etc/motd", motd), ("./bin/big", &big)]);
    assert_eq!(fs.load_tar(&image), Ok(2));
    assert_eq!(fs.len(), 2);
    assert_eq!(fs.contents("/etc/motd"), Some(&motd[..]));
    assert_eq!(fs.contents("/bin/big").map(<[u8]>::len), Some(5000));
    let k = key(lookup(&mut fs, "/etc/motd", false, 1000));
    assert_eq!(page_in(&mut fs, k, 0).unwrap(), motd);
    assert_eq!(lookup(&mut fs, "/etc/motd", true, 0), Err(Errno::EACCES));
    let out = PagerRequest::PageOut {
        object: k,
        offset: 0,
        data: PageData::new(b"x").unwrap(),
    };
    assert_eq!(fs.handle(&out), Err(Errno::EACCES));
    // Loading it again collides, and adds nothing; so does an archive naming a file
    // twice, or holding one too big.
    assert_eq!(fs.load_tar(&image), Err(Errno::EEXIST));
    assert_eq!(fs.len(), 2);
    let twice = archive(&[("x", b"1"), ("y", b"2"), ("x", b"3")]);
    assert_eq!(fs.load_tar(&twice), Err(Errno::EEXIST));
    let huge = archive(&[("z", b"1"), ("w", &[0u8; 2000])]);
    assert_eq!(RamFs::new(1000).load_tar(&huge), Err(Errno::EFBIG));
    assert_eq!(fs.len(), 2);
    assert_eq!(fs.contents("/x"), None);
}

#[test]
fn a_corrupt_archive_is_einval_and_adds_nothing() {
    let image = archive(&[("a", b"abc"), ("b", &[1u8; 700])]);
    for cut in [0, 100, 512, 1024 + 5, image.len() - 1024] {
        let mut fs = RamFs::new(MB);
        assert_eq!(
            fs.load_tar(&image[..cut]),
            Err(Errno::EINVAL),
            "cut at {cut}"
        );
        assert!(fs.is_empty());
    }
    let mut bad = image.clone();
    bad[512 + 10] ^= 1; // a name byte: the checksum no longer matches
    assert_eq!(RamFs::new(MB).load_tar(&bad), Err(Errno::EINVAL));
    // Every truncation and thousands of corruptions: an answer, never a panic.
    for cut in 0..image.len() {
        let _ = RamFs::new(MB).load_tar(&image[..cut]);
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut img = image.clone();
        let at = (x % img.len() as u64) as usize;
        img[at] = (x >> 40) as u8;
        let _ = RamFs::new(MB).load_tar(&img);
    }
}

#[test]
fn creating_refuses_bad_paths_duplicates_and_big_files() {
    let mut fs = RamFs::new(100);
    assert_eq!(fs.create("relative", 0o644, 0, 0, b""), Err(Errno::EINVAL));
    assert_eq!(fs.create("/a/../b", 0o644, 0, 0, b""), Err(Errno::EINVAL));
    assert!(fs.create("/a", 0o644, 0, 0, b"").is_ok());
    assert_eq!(fs.create("/a", 0o644, 0, 0, b""), Err(Errno::EEXIST));
    assert_eq!(fs.create("/big", 0o644, 0, 0, &[0; 101]), Err(Errno::EFBIG));
}

#[test]
fn the_wire_form_serves_the_same_answers() {
    let mut fs = RamFs::new(MB);
    fs.create("/etc/motd", 0o644, 0, 0, b"hi").unwrap();
    let mut req = [0u8; ipc_proto::MAX_PAGER_REQUEST_LEN];
    let mut out = [0u8; ipc_proto::MAX_PAGER_RESPONSE_LEN];
    for (name, r) in ipc_proto::pager::example_requests() {
        let n = ipc_proto::encode_pager_request(&r, &mut req).unwrap();
        let m = fs.handle_message(&req[..n], &mut out);
        let direct = fs.handle(&r);
        assert_eq!(
            ipc_proto::decode_pager_response(&out[..m]),
            Ok(direct),
            "{name}"
        );
    }
    // Garbage and a request of a newer major version get errnos.
    let m = fs.handle_message(&[0xff, 0x01], &mut out);
    assert!(
        ipc_proto::decode_pager_response(&out[..m])
            .unwrap()
            .is_err()
    );
    let hello = PagerRequest::Hello { major: 9, minor: 0 };
    assert_eq!(fs.handle(&hello), Err(Errno::ENOTSUP));
}
