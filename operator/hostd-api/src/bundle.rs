//! The archive format of a version bundle, which the operator reads and serves and hostd
//! unpacks: a tar stream compressed with zstd (`<version>.tar.zst`, what `hakube up` builds:
//! it decompresses several times faster than gzip, and every host of a bring-up unpacks it at
//! once) or with gzip (`<version>.tar.gz`). The compression is told by the stream's first
//! bytes, not by the file name. Its builder may describe it in a first entry, [`MANIFEST`].

use std::io::{self, BufReader, Read, Write};

/// The file name endings of bundles, preferred first.
pub const SUFFIXES: [&str; 2] = [".tar.zst", ".tar.gz"];

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The version a bundle file name is for, if it names a bundle.
pub fn version_of(file_name: &str) -> Option<&str> {
    SUFFIXES
        .iter()
        .find_map(|suffix| file_name.strip_suffix(suffix))
}

/// The media type a bundle is served with.
pub fn content_type(file_name: &str) -> &'static str {
    if file_name.ends_with(SUFFIXES[0]) {
        "application/zstd"
    } else {
        "application/gzip"
    }
}

/// The name of a bundle's first entry when its builder describes it: listing the binaries
/// otherwise means decompressing the whole archive (84 MB, 0.2-0.3 s), which a new Cluster's
/// first reconcile waited for. hostd unpacks it with the binaries, where it does no harm.
pub const MANIFEST: &str = "bundle.json";

/// What a bundle's [`MANIFEST`] says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The file names at the top of the archive, as listing it would give them.
    pub binaries: Vec<String>,
}

impl Manifest {
    /// Appends the manifest to `archive`; it describes the bundle only as its first entry.
    pub fn append_to<W: Write>(&self, archive: &mut tar::Builder<W>) -> io::Result<()> {
        let content = serde_json::to_vec(self)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, MANIFEST, &content[..])
    }
}

/// The tar stream inside a compressed bundle, told zstd from gzip by its first bytes. Those
/// are read in as many reads as they take: a bundle may arrive in chunks of any size.
pub fn tar_stream<'a>(mut compressed: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = Vec::with_capacity(ZSTD_MAGIC.len());
    compressed
        .by_ref()
        .take(ZSTD_MAGIC.len() as u64)
        .read_to_end(&mut head)?;
    let zstd = head.starts_with(&ZSTD_MAGIC);
    let gzip = head.starts_with(&GZIP_MAGIC);
    let whole = BufReader::new(io::Cursor::new(head).chain(compressed));
    if zstd {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(whole)?))
    } else if gzip {
        Ok(Box::new(flate2::bufread::GzDecoder::new(whole)))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a bundle: neither zstd nor gzip compressed",
        ))
    }
}

/// A zstd-compressing writer for a new bundle; `finish` it when the tar stream is complete.
pub fn zstd_writer<W: Write>(out: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    // Level 3 (zstd's default): a quarter smaller than gzip's fastest level here, and quick to
    // write; decompressing costs the same at any level.
    zstd::stream::write::Encoder::new(out, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
        let mut archive = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        archive.append_data(&mut header, name, content).unwrap();
        archive.into_inner().unwrap()
    }

    fn names(compressed: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar_stream(compressed).unwrap());
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    struct ByteByByte<'a>(&'a [u8]);

    impl Read for ByteByByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            match buf.first_mut() {
                Some(slot) => *slot = *first,
                None => return Ok(0),
            }
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn zstd_and_gzip_bundles_read_back_by_their_first_bytes() {
        let tar = tar_of("hakube-apiserver", b"\x7fELF");
        let mut zstd = zstd_writer(Vec::new()).unwrap();
        std::io::Write::write_all(&mut zstd, &tar).unwrap();
        let zstd = zstd.finish().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &tar).unwrap();
        let gzip = gzip.finish().unwrap();
        assert_eq!(names(&zstd), ["hakube-apiserver"]);
        assert_eq!(names(&gzip), ["hakube-apiserver"]);
        // As a download delivers it: in pieces, here of one byte each.
        let trickled = tar_stream(ByteByByte(&zstd)).unwrap();
        let listed = tar::Archive::new(trickled).entries().unwrap().count();
        assert_eq!(listed, 1);

        let plain = tar_stream(&tar[..]).map(|_| ()).unwrap_err();
        assert_eq!(plain.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn file_names_give_the_version_and_media_type() {
        assert_eq!(version_of("v1.33.0.tar.zst"), Some("v1.33.0"));
        assert_eq!(version_of("v1.33.0.tar.gz"), Some("v1.33.0"));
        assert_eq!(version_of("v1.33.0.zip"), None);
        assert_eq!(content_type("v1.tar.zst"), "application/zstd");
        assert_eq!(content_type("v1.tar.gz"), "application/gzip");
    }
}
