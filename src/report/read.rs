//! Reading audit records back: files, folders (rotated and gzip'd files included), standard
//! input; one record per line, reduced into a [`Summary`] as it streams, so memory follows
//! identities × actions and never the number of records. A line that is not a record (cut
//! short by a crash, another format, garbage) is counted, and the first few located; it never
//! stops the read.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use sonic_rs::JsonValueTrait;

use crate::audit::ocsf::API_ACTIVITY;
use crate::inventory::{Observation, Summary};

/// Corrupt lines located in the report, at most.
const LOCATED: usize = 10;
/// Longest line read as a record; a longer one is corrupt (and read past, not held).
const MAX_LINE: usize = 64 * 1024;

/// Which records count: those with `since <= time < until` (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Earliest record counted.
    pub since_ms: u64,
    /// First record no longer counted.
    pub until_ms: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            since_ms: 0,
            until_ms: u64::MAX,
        }
    }
}

/// What reading found besides records.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadNotes {
    /// Files read.
    pub files: usize,
    /// Bytes read (after decompression).
    pub bytes: u64,
    /// Records outside the window.
    pub outside_window: u64,
    /// Where the first corrupt lines are, `file:line`.
    pub corrupt_at: Vec<String>,
}

/// Called now and then while reading, to show progress.
pub type Progress<'p> = &'p mut dyn FnMut(&ReadNotes, &Summary);

/// Streams audit records into a summary.
pub struct Reader<'p> {
    window: Window,
    summary: Summary,
    notes: ReadNotes,
    progress: Option<Progress<'p>>,
    paths: sonic_rs::PointerTree,
}

impl<'p> Reader<'p> {
    /// A reader keeping records in `window`; `progress` is called now and then.
    pub fn new(window: Window, progress: Option<Progress<'p>>) -> Self {
        Self {
            window,
            summary: Summary::default(),
            notes: ReadNotes::default(),
            progress,
            paths: paths(),
        }
    }

    /// Reads `path`: a file (gzip'd or not), or every file in a folder and its subfolders in
    /// name order; `-` is standard input.
    pub fn read_path(&mut self, path: &Path) -> std::io::Result<()> {
        if path.as_os_str() == "-" {
            let stdin = std::io::stdin();
            return self.read_stream("<stdin>", stdin.lock());
        }
        if path.is_dir() {
            let mut files = Vec::new();
            collect(path, &mut files)?;
            for file in files {
                self.read_file(&file)?;
            }
            return Ok(());
        }
        self.read_file(path)
    }

    fn read_file(&mut self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let name = path.display().to_string();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        // gzip by its magic number, whatever the name says.
        let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        if gzip {
            let decoder = flate2::bufread::MultiGzDecoder::new(reader);
            self.read_stream(&name, BufReader::with_capacity(1 << 20, decoder))
        } else {
            self.read_stream(&name, reader)
        }
    }

    /// Reads one stream of lines.
    pub fn read_stream(&mut self, name: &str, mut input: impl BufRead) -> std::io::Result<()> {
        self.notes.files += 1;
        let mut line = Vec::with_capacity(4096);
        let mut number = 0usize;
        loop {
            line.clear();
            let n = (&mut input)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            number += 1;
            self.notes.bytes += n as u64;
            if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
                // Too long to be a record: skip to its end.
                skip_line(&mut input, &mut self.notes.bytes)?;
                self.corrupt(name, number);
                continue;
            }
            let text = trim(&line);
            if text.is_empty() {
                continue;
            }
            self.line(name, number, text);
            if number.is_multiple_of(65_536)
                && let Some(progress) = self.progress.as_mut()
            {
                progress(&self.notes, &self.summary);
            }
        }
        Ok(())
    }

    fn line(&mut self, name: &str, number: usize, text: &[u8]) {
        // Only the fields a review reads are parsed; the rest is skipped by SIMD scanning.
        let Ok(fields) = sonic_rs::get_many(text, &self.paths) else {
            self.corrupt(name, number);
            return;
        };
        let get = |i: usize| fields.get(i).and_then(Option::as_ref);
        let str_at = |i: usize| get(i).and_then(|v| v.as_str());
        let num_at = |i: usize| get(i).and_then(|v| v.as_u64());
        let (Some(time), Some(status_id), Some(reason)) =
            (num_at(TIME), num_at(STATUS_ID), str_at(STATUS_CODE))
        else {
            self.corrupt(name, number);
            return;
        };
        if num_at(CLASS) != Some(u64::from(API_ACTIVITY)) {
            self.corrupt(name, number);
            return;
        }
        if time < self.window.since_ms || time >= self.window.until_ms {
            self.notes.outside_window += 1;
            return;
        }
        let principal = str_at(APP_UID);
        let delegated = str_at(ACCESS_MODE) == Some("delegated");
        let observation = Observation {
            time_ms: time,
            principal,
            // A token-only client is `<issuer>#<client>`; `#` is never in a workload's name.
            workload: principal.is_some_and(|p| !p.contains('#')),
            trust_domain: str_at(TRUST_DOMAIN),
            delegated,
            user: if delegated && num_at(USER_TYPE) == Some(1) {
                str_at(USER_UID)
            } else {
                None
            },
            allowed: status_id == 1,
            reason,
            action: str_at(OPERATION).filter(|a| !a.is_empty()),
            resource_type: str_at(RESOURCE_TYPE),
            issuer: str_at(IDP),
            expires_ms: get(EXPIRES).and_then(|v| v.as_i64()),
        };
        let mut policies: [&str; 8] = [""; 8];
        let mut n = 0;
        if let Some(list) = get(AUTHORIZATIONS).and_then(|v| v.as_raw_str().strip_prefix('[')) {
            // `[{"decision":…,"policy":{"uid":"…"}}, …]`: each entry's policy uid.
            for entry in list.split("\"uid\":").skip(1) {
                if let (Some(slot), Some(id)) = (policies.get_mut(n), policy_uid(entry)) {
                    *slot = id;
                    n += 1;
                }
            }
        }
        self.summary
            .observe(&observation, policies.get(..n).unwrap_or_default());
    }

    fn corrupt(&mut self, name: &str, number: usize) {
        self.summary.corrupt += 1;
        if self.notes.corrupt_at.len() < LOCATED {
            self.notes.corrupt_at.push(format!("{name}:{number}"));
        }
    }

    /// The summary and what else reading found.
    pub fn finish(self) -> (Summary, ReadNotes) {
        (self.summary, self.notes)
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn skip_line(input: &mut impl BufRead, bytes: &mut u64) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                *bytes += end as u64 + 1;
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
                *bytes += n as u64;
            }
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    line.get(..end).unwrap_or_default()
}

/// A policy id written by Tollgate: `"<id>"` with no escapes (Cedar `@id`s that need one are
/// read as corrupt-free but unnamed, and counted under no policy).
fn policy_uid(entry: &str) -> Option<&str> {
    let rest = entry.strip_prefix('"')?;
    let end = rest.find('"')?;
    let id = rest.get(..end)?;
    (!id.contains('\\')).then_some(id)
}

/// Where each field a review reads is, by index in [`paths`].
const CLASS: usize = 0;
const TIME: usize = 1;
const STATUS_ID: usize = 2;
const STATUS_CODE: usize = 3;
const APP_UID: usize = 4;
const USER_UID: usize = 5;
const USER_TYPE: usize = 6;
const IDP: usize = 7;
const AUTHORIZATIONS: usize = 8;
const OPERATION: usize = 9;
const RESOURCE_TYPE: usize = 10;
const ACCESS_MODE: usize = 11;
const TRUST_DOMAIN: usize = 12;
const EXPIRES: usize = 13;

fn paths() -> sonic_rs::PointerTree {
    let mut tree = sonic_rs::PointerTree::new();
    tree.add_path(["class_uid"].iter());
    tree.add_path(["time"].iter());
    tree.add_path(["status_id"].iter());
    tree.add_path(["status_code"].iter());
    tree.add_path(["actor", "app_uid"].iter());
    tree.add_path(["actor", "user", "uid"].iter());
    tree.add_path(["actor", "user", "type_id"].iter());
    tree.add_path(["actor", "idp", "name"].iter());
    tree.add_path(["actor", "authorizations"].iter());
    tree.add_path(["api", "operation"].iter());
    tree.add_path(sonic_rs::pointer!["resources", 0, "type"].iter());
    tree.add_path(["unmapped", "tollgate", "access_mode"].iter());
    tree.add_path(["unmapped", "tollgate", "trust_domain"].iter());
    tree.add_path(["unmapped", "tollgate", "credentials_expire"].iter());
    tree
}
