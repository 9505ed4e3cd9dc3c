//! TensorBoard scalars in the TF event-file format, written by hand: a file
//! of records `u64 len | u32 masked-crc32c(len) | Event | u32
//! masked-crc32c(Event)`, each `Event` a small protobuf (wall_time = 1,
//! step = 2, file_version = 3, summary = 5 { value = 1 { tag = 1,
//! simple_value = 2 } }). The reader checks every CRC; tests use it.

use anyhow::{Context, Result, bail, ensure};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MASK_DELTA: u32 = 0xa282_ead8;
pub const FILE_VERSION: &str = "brain.Event:2";

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(MASK_DELTA)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One decoded event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub scalars: Vec<(String, f32)>,
}

impl Event {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1 << 3 | 1];
        out.extend_from_slice(&self.wall_time.to_le_bytes());
        if self.step != 0 {
            varint(2 << 3, &mut out);
            varint(self.step as u64, &mut out);
        }
        if let Some(v) = &self.file_version {
            bytes_field(3, v.as_bytes(), &mut out);
        }
        if !self.scalars.is_empty() {
            let mut summary = Vec::new();
            for (tag, value) in &self.scalars {
                let mut v = Vec::new();
                bytes_field(1, tag.as_bytes(), &mut v);
                v.push(2 << 3 | 5);
                v.extend_from_slice(&value.to_le_bytes());
                bytes_field(1, &v, &mut summary);
            }
            bytes_field(5, &summary, &mut out);
        }
        out
    }
}

/// Appends scalar events to `DIR/events.out.tfevents.<secs>.<host>`.
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "mmsr".into());
        let name = format!(
            "events.out.tfevents.{}.{}",
            now() as u64,
            host.replace(['/', '\\'], "_")
        );
        let path = dir.join(name);
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = Self { path, file };
        w.write(&Event {
            wall_time: now(),
            file_version: Some(FILE_VERSION.into()),
            ..Default::default()
        })?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn scalars(&mut self, step: i64, scalars: Vec<(String, f32)>) -> Result<()> {
        self.write(&Event {
            wall_time: now(),
            step,
            file_version: None,
            scalars,
        })
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode();
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(&data);
        rec.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file
            .write_all(&rec)
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            self.at + n <= self.buf.len(),
            "truncated at byte {}",
            self.at
        );
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        bail!("varint too long at byte {}", self.at)
    }
    /// (field, wire type, payload for length-delimited/fixed fields).
    fn field(&mut self) -> Result<(u64, u64, &'a [u8], u64)> {
        let key = self.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        Ok(match wire {
            0 => (field, wire, &[][..], self.varint()?),
            1 => (field, wire, self.take(8)?, 0),
            2 => {
                let n = self.varint()? as usize;
                (field, wire, self.take(n)?, 0)
            }
            5 => (field, wire, self.take(4)?, 0),
            w => bail!("unsupported wire type {w}"),
        })
    }
}

fn decode_event(data: &[u8]) -> Result<Event> {
    let mut ev = Event::default();
    let mut r = Reader { buf: data, at: 0 };
    while !r.done() {
        match r.field()? {
            (1, 1, b, _) => ev.wall_time = f64::from_le_bytes(b.try_into()?),
            (2, 0, _, v) => ev.step = v as i64,
            (3, 2, b, _) => ev.file_version = Some(String::from_utf8(b.to_vec())?),
            (5, 2, summary, _) => {
                let mut s = Reader {
                    buf: summary,
                    at: 0,
                };
                while !s.done() {
                    let (_, _, value, _) = s.field()?;
                    let mut v = Reader { buf: value, at: 0 };
                    let (mut tag, mut x) = (String::new(), f32::NAN);
                    while !v.done() {
                        match v.field()? {
                            (1, 2, b, _) => tag = String::from_utf8(b.to_vec())?,
                            (2, 5, b, _) => x = f32::from_le_bytes(b.try_into()?),
                            _ => {}
                        }
                    }
                    ev.scalars.push((tag, x));
                }
            }
            _ => {}
        }
    }
    Ok(ev)
}

/// Reads an event file, checking both CRCs of every record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut r = Reader { buf: &bytes, at: 0 };
    let mut out = Vec::new();
    while !r.done() {
        let at = r.at;
        let len = r.take(8)?;
        let len_crc = u32::from_le_bytes(r.take(4)?.try_into()?);
        ensure!(
            len_crc == masked_crc(len),
            "{}: record at byte {at}: length CRC mismatch",
            path.display()
        );
        let data = r.take(u64::from_le_bytes(len.try_into()?) as usize)?;
        let data_crc = u32::from_le_bytes(r.take(4)?.try_into()?);
        ensure!(
            data_crc == masked_crc(data),
            "{}: record at byte {at}: data CRC mismatch",
            path.display()
        );
        out.push(
            decode_event(data)
                .with_context(|| format!("{}: record at byte {at}", path.display()))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_encoding_match_the_format() {
        // The CRC-32C check value, and the mask of TF's record_writer.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // Mask((crc >> 15) | (crc << 17)) + 0xa282ead8, worked by hand.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        let ev = Event {
            wall_time: 1.5,
            step: 300,
            file_version: None,
            scalars: vec![("r".into(), 0.25)],
        };
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02]); // step 300 as a varint
        want.extend_from_slice(&[0x2a, 10, 0x0a, 8, 0x0a, 1, b'r', 0x15]);
        want.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(ev.encode(), want);
    }

    #[test]
    fn scalars_read_back_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(
            1,
            vec![("reward".into(), 0.5), ("search/image_ratio".into(), 0.25)],
        )
        .unwrap();
        w.scalars(2, vec![("reward".into(), 0.75)]).unwrap();
        let path = w.path().to_path_buf();
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("events.out.tfevents.")
        );
        let evs = read_events(&path).unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!(evs[1].step, 1);
        assert_eq!(
            evs[1].scalars,
            vec![
                ("reward".to_string(), 0.5),
                ("search/image_ratio".to_string(), 0.25)
            ]
        );
        assert_eq!(evs[2].scalars, vec![("reward".to_string(), 0.75)]);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(err.contains("data CRC mismatch"), "{err}");
    }
}
