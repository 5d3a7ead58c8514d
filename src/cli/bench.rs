//! `tollgate bench`: drive a running Tollgate with a mix of demo callers and routes, and report
//! throughput and latency percentiles; `--baseline` first measures the do-nothing Check server
//! (`tollgate-floor`, its own process and binary) in the same run, so every report carries its
//! floor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

use crate::demo::{DemoRequest, mint};
use crate::loadgen::{self, LoadReport, Mode, Target, envoy_request};

use super::Exit;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The request mix uses credentials for the embedded demo estate (run the \
server with `tollgate serve`): allowed and denied reads, delegated access, a quarantined app, a \
bound admin call and an unauthenticated request. Other estates will mostly deny, which is still \
a valid load. Exit code: 0 ok, 1 error."
)]
pub struct BenchArgs {
    /// Tollgate's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:9191", conflicts_with = "unix")]
    server: String,
    /// Tollgate's Unix socket instead of TCP.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Closed loop: requests in flight at all times.
    #[arg(long, default_value_t = 16, conflicts_with = "rate")]
    concurrency: usize,
    /// HTTP/2 connections to spread the requests over, as Envoy's workers and h2load's
    /// clients each hold their own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// Open loop: requests per second (latency counted from each scheduled send).
    #[arg(long)]
    rate: Option<u64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// First measure the do-nothing Check server (`tollgate-floor`, found next to this
    /// executable and started as its own process) with the same load.
    #[arg(long)]
    baseline: bool,
    /// With `--baseline`: a plain tonic server with the ext_authz service alone (no admission,
    /// deadline or health service), the floor a neutral observer uses.
    #[arg(long, requires = "baseline")]
    bare: bool,
    /// With `--authzen --baseline`: a floor that reads each body and answers
    /// `{"decision":true}` as JSON (what an AuthZEN server that decides nothing still does),
    /// instead of an empty 200 with the body unread.
    #[arg(long, requires = "baseline", requires = "authzen")]
    json_floor: bool,
    /// With `--baseline`: measure the floor and Tollgate this many times each (1, or an even
    /// number up to 100), alternating which goes first, and report every round's ratio and
    /// their medians. A machine that grows slower or faster during the run (other tenants,
    /// thermal limits) then weighs on both alike instead of on whichever ran second.
    #[arg(
        long,
        default_value_t = 1,
        value_parser = rounds,
        requires = "baseline",
        conflicts_with = "distinct"
    )]
    rounds: u32,
    /// Write the first request of the mix (an allowed order read) as one gRPC message
    /// (5-byte prefix + protobuf) to FILE and exit, for other load generators
    /// (`h2load -d FILE`).
    #[arg(long, value_name = "FILE")]
    write_frame: Option<PathBuf>,
    /// With `--http` or `--authzen`: write the first request of that mix (the allowed order
    /// read as forward-auth; alice viewing order A-1 by AuthZEN) as an HTTP/1.1 message (head
    /// and body) to FILE and exit, for other load generators (`benches/neutral.py --http`
    /// gives it to h2load) or to send by hand.
    #[arg(long, value_name = "FILE")]
    write_request: Option<PathBuf>,
    /// A flood, to check that the server's memory stays bounded: `orders` gives every request
    /// a new order id (a new decision-cache key); `callers` mints every request a new
    /// certificate and a token for a new user (new keys in all three caches, and full
    /// verification on the server; minting costs the generator ~0.1 ms a request);
    /// `forgeries` sends the allowed request's token with a new signature every time (each
    /// passes the cheap checks and costs the server a signature verification that fails);
    /// `tokens` sends the allowed request with a new, validly signed token every time (minted
    /// ahead, so it needs `--rate`): what a legitimate caller's new token costs.
    #[arg(long, value_enum, value_name = "WHAT", num_args = 0..=1, default_missing_value = "orders")]
    distinct: Option<Flood>,
    /// Send only the first request of the mix (the allowed order read), every time: the warm
    /// allowed path, to set beside `--distinct forgeries`.
    #[arg(long, conflicts_with = "distinct")]
    single: bool,
    /// The server's pid: report its CPU per request over the measured time (from
    /// `/proc/PID/stat`) and its peak RSS at the end. The baseline's are always reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Drive the HTTP listener's forward-auth instead of gRPC: the same mix as Envoy's HTTP
    /// ext_authz sends it (`/envoy/<path>`, the certificate in RFC 9440's `Client-Cert`, which
    /// the demo trusts from loopback), over `--concurrency` kept-alive HTTP/1.1 connections.
    /// With `--baseline`, the floor is `tollgate-floor --http`.
    #[arg(long, conflicts_with_all = ["authzen", "unix", "distinct", "write_frame", "rate"])]
    http: bool,
    /// Drive the AuthZEN API: single evaluations (`POST /access/v1/evaluation`) by the demo's
    /// web front end PEP, users viewing orders (allowed and denied), like `--http` otherwise.
    #[arg(long, conflicts_with_all = ["unix", "distinct", "write_frame", "rate"])]
    authzen: bool,
    /// The HTTP listener's address, for `--http` and `--authzen`.
    #[arg(long, default_value = "127.0.0.1:9193")]
    http_server: std::net::SocketAddr,
}

pub(super) fn run(args: BenchArgs) -> Exit {
    let runtime = match super::runtime(true) {
        Ok(rt) => rt,
        Err(exit) => return exit,
    };
    runtime.block_on(async move {
        match bench(args).await {
            Ok(()) => Exit::Ok,
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Error
            }
        }
    })
}

/// What `--distinct` makes new in every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Flood {
    /// A new order id.
    Orders,
    /// A new certificate and a new delegated token.
    Callers,
    /// A new workload (SPIFFE ID, certificate and token) every request: what the inventory and
    /// the compromise signals must stay bounded under.
    Identities,
    /// The allowed request's token with a new (wrong) signature.
    Forgeries,
    /// The allowed request with a new, validly signed token for the same app: what a
    /// legitimate caller's token not seen before costs (its verification, its claims, the
    /// caches' misses and inserts), set beside `forgeries`.
    Tokens,
}

/// The CPU model and the CPUs `/proc/cpuinfo` lists (the host's, even in a container with a
/// CPU quota), else how many this process may use: a ratio to the floor depends on the
/// machine (how much of a request is the kernel's), so a figure is quoted with it. It is the
/// machine `tollgate bench` runs on, the server's too when both run on one, as on loopback.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim())
        .filter(|model| !model.is_empty())
        .map_or_else(
            || {
                format!(
                    "{} (no model name in /proc/cpuinfo)",
                    std::env::consts::ARCH
                )
            },
            str::to_owned,
        );
    let online = info
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    let cpus = match online {
        0 => std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        n => n,
    };
    match cpus {
        0 => model,
        1 => format!("{model}, 1 CPU"),
        n => format!("{model}, {n} CPUs"),
    }
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    if args.write_request.is_some() && !(args.http || args.authzen) {
        return Err("--write-request writes an HTTP request: add --http or --authzen".into());
    }
    if args.http || args.authzen {
        return bench_http(args).await;
    }
    let mix = mix()?;
    let kinds = mix.len();
    let template = mix.first().cloned().ok_or("empty mix")?;
    if let Some(path) = &args.write_frame {
        std::fs::write(path, grpc_frame(&template))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        println!(
            "wrote {} (one CheckRequest as a gRPC message)",
            path.display()
        );
        return Ok(());
    }
    let requests = match args.distinct {
        Some(Flood::Orders) => distinct_orders(template),
        Some(Flood::Callers) => distinct_callers(template),
        Some(Flood::Identities) => distinct_identities(template),
        Some(Flood::Forgeries) => distinct_forgeries(template)?,
        Some(Flood::Tokens) => distinct_tokens(template, tokens_ahead(&args)?)?,
        None if args.single => loadgen::round_robin(vec![template])?,
        None => loadgen::round_robin(mix)?,
    };
    let mode = match args.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed {
            concurrency: args.concurrency,
        },
    };
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let what = match args.distinct {
        Some(Flood::Orders) => "every request a new order id".to_owned(),
        Some(Flood::Callers) => "every request a new certificate and user token".to_owned(),
        Some(Flood::Identities) => "every request a new workload identity".to_owned(),
        Some(Flood::Forgeries) => "every request a new forged token signature".to_owned(),
        Some(Flood::Tokens) => "every request a new token, validly signed".to_owned(),
        None if args.single => "the allowed order read, repeated".to_owned(),
        None => format!("{kinds} request kinds"),
    };
    let connections = usize::from(args.connections);
    println!(
        "mode: {mode:?} over {connections} connection(s), warmup {warmup:?}, duration {duration:?}, {what}"
    );
    println!("machine: {}", machine());
    let times = (warmup, duration);

    let floor = if args.baseline {
        let floor = Floor::start(if args.bare { &["--bare"] } else { &[] })?;
        let target = Target::Tcp(format!("http://{}", floor.addr));
        let channels = loadgen::connect_all(&target, connections).await?;
        Some((floor, channels))
    } else {
        None
    };
    let kind = if args.bare {
        "do-nothing Check, plain tonic"
    } else {
        "do-nothing Check, Tollgate's transport"
    };
    let target = match &args.unix {
        Some(path) => Target::Unix(path.clone()),
        None => Target::Tcp(args.server.clone()),
    };
    let channels = loadgen::connect_all(&target, connections).await?;
    let floor_kind = floor.as_ref().map(|_| kind);
    alternate(args.rounds, floor_kind, async |side| match (side, &floor) {
        (Side::Floor, Some((floor, floor_channels))) => {
            let pid = Some(floor.child.id());
            loadgen::run(floor_channels, mode, requests.clone(), times, pid).await
        }
        _ => loadgen::run(&channels, mode, requests.clone(), times, args.server_pid).await,
    })
    .await?;
    print_peak_rss(args.server_pid);
    Ok(())
}

/// A running `tollgate-floor`, stopped on drop.
struct Floor {
    child: std::process::Child,
    addr: String,
}

impl Floor {
    /// Starts the floor binary that sits next to this executable on a free loopback port, with
    /// `flags` (`--bare`: a plain tonic server; `--http`: the do-nothing HTTP server, which
    /// `--json` makes read bodies and answer AuthZEN's JSON).
    fn start(flags: &[&str]) -> Result<Self, String> {
        use std::io::BufRead;
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .with_file_name("tollgate-floor");
        let mut child = std::process::Command::new(&exe)
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "--baseline needs {}: {e} (build it with `cargo build --release --bins`)",
                    exe.display()
                )
            })?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        }
        match line.trim().strip_prefix("listening on ") {
            Some(addr) => Ok(Self {
                addr: addr.to_owned(),
                child,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{} did not start", exe.display()))
            }
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's peak RSS, when its pid was given.
fn print_peak_rss(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    match loadgen::peak_rss_kib(pid) {
        Some(kib) => println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0),
        None => println!("server peak RSS: unavailable for pid {pid}"),
    }
}

/// `--rounds`: 1, or an even number (each order, floor first and Tollgate first, as often as
/// the other: with an odd count one comes first once more, and the median keeps its bias).
fn rounds(text: &str) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of rounds"))?;
    match n {
        1 => Ok(1),
        2..=100 if n.is_multiple_of(2) => Ok(n),
        _ => Err(format!(
            "{n} rounds: give 1, or an even number up to 100, so that the floor and Tollgate \
             each go first equally often"
        )),
    }
}

/// Which server one measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Floor,
    Tollgate,
}

/// Measures Tollgate `rounds` times and, given `floor` (what the floor is, for the output),
/// the floor as many times, alternating which goes first: floor then Tollgate, then Tollgate
/// then floor, and so on. Prints each measurement as it ends, each round's ratio, and with
/// more than one round the medians.
async fn alternate(
    rounds: u32,
    floor: Option<&str>,
    mut measure: impl AsyncFnMut(Side) -> Result<LoadReport, String>,
) -> Result<(), String> {
    let mut ratios = Vec::new();
    for round in 1..=rounds.max(1) {
        let label = if rounds > 1 {
            format!("round {round}/{rounds}: ")
        } else {
            String::new()
        };
        let order = if round % 2 == 1 {
            [Side::Floor, Side::Tollgate]
        } else {
            [Side::Tollgate, Side::Floor]
        };
        let (mut theirs, mut ours) = (None, None);
        for side in order {
            match (side, floor) {
                (Side::Floor, None) => {}
                (Side::Floor, Some(kind)) => {
                    let report = measure(side).await?;
                    println!("{label}baseline ({kind}): {}", report.summary());
                    theirs = Some(report);
                }
                (Side::Tollgate, _) => {
                    let report = measure(side).await?;
                    println!("{label}tollgate: {}", report.summary());
                    ours = Some(report);
                }
            }
        }
        if let (Some(ours), Some(theirs)) = (&ours, &theirs) {
            let ratio = Ratio::of(ours, theirs);
            println!("{label}tollgate / baseline: {ratio}");
            ratios.push(ratio);
        }
    }
    if ratios.len() > 1 {
        println!(
            "median of {} rounds, tollgate / baseline: {}",
            ratios.len(),
            Ratio::median(&ratios)
        );
    }
    Ok(())
}

/// Tollgate's measurement against the floor's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratio {
    /// Tollgate's throughput as a share of the floor's.
    throughput: f64,
    /// Latency differences, microseconds.
    p50: i64,
    p99: i64,
    /// Tollgate's server CPU per request over the floor's, when both were measured.
    cpu: Option<f64>,
}

impl Ratio {
    fn of(ours: &LoadReport, theirs: &LoadReport) -> Self {
        let cpu = match (ours.cpu_per_request(), theirs.cpu_per_request()) {
            (Some(ours), Some(theirs)) => Some(ours / theirs.max(f64::EPSILON)),
            _ => None,
        };
        Self {
            throughput: ours.throughput() / theirs.throughput().max(f64::EPSILON),
            p50: ours.percentile(0.5) as i64 - theirs.percentile(0.5) as i64,
            p99: ours.percentile(0.99) as i64 - theirs.percentile(0.99) as i64,
            cpu,
        }
    }

    /// Each figure's median over `rounds` (of an even count, the mean of the middle two).
    fn median(rounds: &[Self]) -> Self {
        fn median(mut values: Vec<f64>) -> f64 {
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            match (values.get(mid.wrapping_sub(1)), values.get(mid)) {
                (Some(a), Some(b)) if values.len().is_multiple_of(2) => (a + b) / 2.0,
                (_, Some(b)) => *b,
                _ => f64::NAN,
            }
        }
        let of = |figure: fn(&Self) -> f64| median(rounds.iter().map(figure).collect());
        let cpu: Option<Vec<f64>> = rounds.iter().map(|r| r.cpu).collect();
        Self {
            throughput: of(|r| r.throughput),
            p50: of(|r| r.p50 as f64).round() as i64,
            p99: of(|r| r.p99 as f64).round() as i64,
            cpu: cpu.map(median),
        }
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "throughput {:.0}%, p50 {:+}µs, p99 {:+}µs",
            100.0 * self.throughput,
            self.p50,
            self.p99
        )?;
        if let Some(cpu) = self.cpu {
            write!(f, ", server CPU {cpu:.2}×")?;
        }
        Ok(())
    }
}

/// `bench --http` / `--authzen`: closed loop over kept-alive HTTP/1.1 connections, after the
/// do-nothing HTTP floor when `--baseline` asks.
async fn bench_http(args: BenchArgs) -> Result<(), String> {
    let (requests, allowed, what): (loadgen::HttpSource, loadgen::Allowed, _) = if args.authzen {
        let mix = authzen_mix()?;
        let kinds = mix.len();
        (
            http_round_robin(mix)?,
            |status, body| {
                status == 200 && memchr::memmem::find(body, b"\"decision\":true").is_some()
            },
            format!("{kinds} AuthZEN evaluations"),
        )
    } else {
        let mix: Vec<loadgen::HttpRequest> = mix()?.iter().map(forward_auth).collect();
        let kinds = mix.len();
        (
            http_round_robin(if args.single {
                mix.into_iter().take(1).collect()
            } else {
                mix
            })?,
            |status, _| status == 200,
            if args.single {
                "the allowed order read as forward-auth, repeated".to_owned()
            } else {
                format!("{kinds} forward-auth request kinds")
            },
        )
    };
    if let Some(path) = &args.write_request {
        let first = requests(0);
        std::fs::write(path, http1_message(&first))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        println!(
            "wrote {} ({} {} as an HTTP/1.1 request)",
            path.display(),
            first.method,
            first.path
        );
        return Ok(());
    }
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let concurrency = args.concurrency.max(1);
    println!(
        "mode: closed loop, {concurrency} HTTP/1.1 connection(s), warmup {warmup:?}, duration \
         {duration:?}, {what}"
    );
    println!("machine: {}", machine());
    let times = (warmup, duration);
    let floor = if args.baseline {
        let floor = Floor::start(if args.json_floor {
            &["--http", "--json"]
        } else {
            &["--http"]
        })?;
        let addr: std::net::SocketAddr = floor
            .addr
            .parse()
            .map_err(|e| format!("the floor's address {}: {e}", floor.addr))?;
        Some((floor, addr))
    } else {
        None
    };
    let kind = if args.json_floor {
        "reads the body, answers {\"decision\":true}, Tollgate's HTTP listener"
    } else {
        "do-nothing HTTP, Tollgate's HTTP listener"
    };
    let floor_kind = floor.as_ref().map(|_| kind);
    alternate(args.rounds, floor_kind, async |side| match (side, &floor) {
        (Side::Floor, Some((floor, addr))) => {
            let pid = Some(floor.child.id());
            let ok: loadgen::Allowed = |status, _| status == 200;
            loadgen::run_http(*addr, concurrency, requests.clone(), times, pid, ok).await
        }
        _ => {
            let pid = args.server_pid;
            loadgen::run_http(
                args.http_server,
                concurrency,
                requests.clone(),
                times,
                pid,
                allowed,
            )
            .await
        }
    })
    .await?;
    print_peak_rss(args.server_pid);
    Ok(())
}

/// `request` as HTTP/1.1 puts it on the wire: request line, headers (a `content-length` for a
/// body), blank line, body.
fn http1_message(request: &loadgen::HttpRequest) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.path).into_bytes();
    for (name, value) in &request.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !request.body.is_empty() {
        out.extend_from_slice(format!("content-length: {}\r\n", request.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&request.body);
    out
}

fn http_round_robin(requests: Vec<loadgen::HttpRequest>) -> Result<loadgen::HttpSource, String> {
    if requests.is_empty() {
        return Err("no requests to send".into());
    }
    Ok(Arc::new(move |n| {
        let len = requests.len() as u64;
        let at = usize::try_from(n % len).unwrap_or_default();
        requests
            .get(at)
            .or(requests.first())
            .cloned()
            .unwrap_or_else(|| loadgen::HttpRequest {
                method: hyper::Method::GET,
                path: "/".into(),
                headers: Vec::new(),
                body: hyper::body::Bytes::new(),
            })
    }))
}

/// `request` as Envoy's HTTP ext_authz sends it to `/envoy`: the original method and path,
/// the headers, the client certificate in RFC 9440's `Client-Cert` and the client's address
/// in `X-Forwarded-For`.
fn forward_auth(request: &CheckRequest) -> loadgen::HttpRequest {
    use hyper::header::{HeaderName, HeaderValue};
    let attributes = request.attributes.clone().unwrap_or_default();
    let source = attributes.source.unwrap_or_default();
    let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut put = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.push((name, value));
        }
    };
    put("host", &http.host);
    for (name, value) in &http.headers {
        if !name.starts_with(':') {
            put(name, value);
        }
    }
    let pem = percent_encoding::percent_decode_str(&source.certificate).decode_utf8_lossy();
    if let Some(der) = pem_der(&pem) {
        use base64::Engine;
        put(
            "client-cert",
            &format!(
                ":{}:",
                base64::engine::general_purpose::STANDARD.encode(der)
            ),
        );
    }
    if let Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(a)) =
        source.address.and_then(|a| a.address)
    {
        put("x-forwarded-for", &a.address);
    }
    loadgen::HttpRequest {
        method: hyper::Method::from_bytes(http.method.as_bytes()).unwrap_or(hyper::Method::GET),
        path: format!("/envoy{}", http.path),
        headers,
        body: hyper::body::Bytes::new(),
    }
}

/// AuthZEN evaluations against the demo estate, asked by the web front end's PEP (its
/// certificate in `Client-Cert`): users viewing orders, the PDP's own order `A-1` and orders
/// whose owner the PEP names, allowed and denied.
fn authzen_mix() -> Result<Vec<loadgen::HttpRequest>, String> {
    use hyper::header::{HeaderName, HeaderValue};
    let pep = mint(&DemoRequest {
        app: "web-frontend".into(),
        scopes: Vec::new(),
        user: None,
        bind: false,
        lifetime: Duration::from_secs(3600),
    })
    .map_err(|e| e.to_string())?;
    let der = pem_der(&pep.cert_pem).ok_or("the minted certificate is not PEM")?;
    let client_cert = {
        use base64::Engine;
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let mut out = Vec::new();
    for (user, order, owner) in [
        ("alice", "A-1", None),
        ("bob", "A-1", None),
        ("bob", "B-7", Some("bob")),
        ("carol", "B-7", Some("bob")),
        ("alice", "C-3", Some("alice")),
        ("carol", "C-4", Some("carol")),
    ] {
        let resource = match owner {
            Some(owner) => serde_json::json!({"type": "order", "id": order,
                "properties": {"owner": {"type": "User", "id": owner}}}),
            None => serde_json::json!({"type": "order", "id": order}),
        };
        let body = serde_json::json!({
            "subject": {"type": "user", "id": user},
            "action": {"name": "orders:view"},
            "resource": resource,
        });
        let headers = [
            ("host", "pdp.demo"),
            ("content-type", "application/json"),
            ("client-cert", client_cert.as_str()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((HeaderName::from_static(k), HeaderValue::from_str(v).ok()?)))
        .collect();
        out.push(loadgen::HttpRequest {
            method: hyper::Method::POST,
            path: crate::http::authzen::EVALUATION.into(),
            headers,
            body: hyper::body::Bytes::from(body.to_string()),
        });
    }
    Ok(out)
}

/// The first certificate of `pem`, DER.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|der| der.to_vec())
}

/// One gRPC message: a zero compression flag, the length (big-endian u32), the protobuf.
fn grpc_frame(request: &CheckRequest) -> Vec<u8> {
    use prost::Message;
    let body = request.encode_to_vec();
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// `template` (an allowed order read) with path `/orders/<n>` for the n-th request.
fn distinct_orders(template: CheckRequest) -> loadgen::RequestSource {
    Arc::new(move |n| {
        let mut request = template.clone();
        if let Some(http) = request
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            http.path = format!("/orders/{n}");
        }
        request
    })
}

/// The `authorization` header of a Check, to replace its token.
fn bearer_header(request: &mut CheckRequest) -> Option<&mut String> {
    request
        .attributes
        .as_mut()?
        .request
        .as_mut()?
        .http
        .as_mut()?
        .headers
        .get_mut("authorization")
}

/// For the n-th request, `template` with its bearer token's signature replaced by one that
/// encodes `n`: well formed (right length, base64url) and signed by nobody, so the server
/// runs every cheap check and then a signature verification that fails.
fn distinct_forgeries(template: CheckRequest) -> Result<loadgen::RequestSource, String> {
    /// 8 bytes of counter are 11 base64url characters.
    const STAMP: usize = 11;
    let mut probe = template.clone();
    let signature_at = bearer_header(&mut probe)
        .and_then(|value| value.rfind('.').filter(|&dot| value.len() > dot + STAMP))
        .ok_or("the request to forge carries no bearer token with a signature to change")?;
    Ok(Arc::new(move |n: u64| {
        use base64::Engine;
        let mut request = template.clone();
        if let Some(value) = bearer_header(&mut request) {
            // The counter replaces the signature's first characters; the rest stays.
            let stamp = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_be_bytes());
            let start = signature_at + 1;
            if let Some(end) = start.checked_add(stamp.len()).filter(|&e| e <= value.len()) {
                value.replace_range(start..end, &stamp);
            }
        }
        request
    }))
}

/// Most tokens `--distinct tokens` mints ahead: about 600 bytes and 30 µs each.
const MAX_TOKENS_AHEAD: f64 = 2_000_000.0;

/// How many tokens `--distinct tokens` mints ahead (one for every request the run sends, with a
/// margin: minting while sending would load the machine the server is measured on), and for how
/// long they are valid (the whole run, an hour at least).
fn tokens_ahead(args: &BenchArgs) -> Result<(u64, Duration), String> {
    let rate = args
        .rate
        .filter(|&rate| rate > 0)
        .ok_or("--distinct tokens mints its tokens ahead: give a request rate above 0 (--rate)")?;
    let seconds = args.warmup.max(0.0) + args.duration.max(0.1);
    let count = (rate as f64 * (seconds * 1.1 + 1.0)).ceil();
    if !count.is_finite() || count > MAX_TOKENS_AHEAD {
        return Err(format!(
            "--distinct tokens would mint {count} tokens ahead, more than \
             {MAX_TOKENS_AHEAD}: lower --rate or --duration"
        ));
    }
    let lifetime = Duration::try_from_secs_f64(seconds * 2.0)
        .unwrap_or_default()
        .max(Duration::from_secs(3600));
    Ok((count as u64, lifetime))
}

/// For the n-th request, `template` with the n-th of `count` tokens minted ahead for its app,
/// each with its own `jti` (the template's token has none, so each new one also costs the
/// server a revocation lookup of it). Past `count` the tokens come round again.
fn distinct_tokens(
    template: CheckRequest,
    (count, lifetime): (u64, Duration),
) -> Result<loadgen::RequestSource, String> {
    let minter = crate::demo::TokenMinter::new().map_err(|e| e.to_string())?;
    let request = DemoRequest {
        app: TEMPLATE_APP.into(),
        scopes: TEMPLATE_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        user: None,
        bind: false,
        lifetime,
    };
    // About 30 µs a token: a few seconds before a long run.
    eprintln!("minting {count} tokens ahead");
    let tokens = (0..count)
        .map(|n| {
            minter
                .token(&request, None, Some(&format!("bench-{n}")))
                .map(|token| format!("Bearer {token}"))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(move |n: u64| {
        let mut request = template.clone();
        let at = usize::try_from(n % count).unwrap_or_default();
        if let (Some(value), Some(token)) = (bearer_header(&mut request), tokens.get(at)) {
            value.clone_from(token);
        }
        request
    }))
}

/// For the n-th request, a new certificate for `web-frontend` and a token acting for `user-<n>`,
/// reading that user's order.
fn distinct_callers(template: CheckRequest) -> loadgen::RequestSource {
    minted_afresh(template, |n| {
        let user = format!("user-{n}");
        let path = format!("/users/{user}/orders/1");
        (("web-frontend".to_owned(), Some(user)), path)
    })
}

/// For the n-th request, a new workload `flood-<n>` (its own SPIFFE ID, certificate and
/// app-only token) reading an order, which the demo's policies deny.
fn distinct_identities(template: CheckRequest) -> loadgen::RequestSource {
    minted_afresh(template, |n| {
        ((format!("flood-{n}"), None), "/orders/1".to_owned())
    })
}

/// Requests whose credentials are minted afresh for each: `make` names the n-th request's app,
/// the user it acts for (if any), and its path. Should minting fail, the request goes out as
/// `template` (and the report shows the difference).
fn minted_afresh(
    template: CheckRequest,
    make: impl Fn(u64) -> ((String, Option<String>), String) + Send + Sync + 'static,
) -> loadgen::RequestSource {
    Arc::new(move |n| {
        let ((app, user), path) = make(n);
        let minted = mint(&DemoRequest {
            app,
            scopes: vec!["orders.read".into()],
            user,
            bind: false,
            lifetime: Duration::from_secs(3600),
        });
        let Ok(creds) = minted else {
            return template.clone();
        };
        let headers = HashMap::from([(
            "authorization".to_owned(),
            format!("Bearer {}", creds.token),
        )]);
        envoy_request(
            "GET",
            &path,
            "shop.demo",
            headers,
            Some(&creds.cert_pem),
            "10.0.0.2",
        )
    })
}

/// The app of the mix's first request (the allowed order read), and its token's scopes.
const TEMPLATE_APP: &str = "orders";
const TEMPLATE_SCOPES: &[&str] = &["orders.read", "payments.charge"];

/// A realistic mix against the demo estate: allowed and denied, app-only and delegated.
fn mix() -> Result<Vec<CheckRequest>, String> {
    let creds = |app: &str, scopes: &[&str], user: Option<&str>, bind: bool| {
        mint(&DemoRequest {
            app: app.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            user: user.map(str::to_owned),
            bind,
            lifetime: Duration::from_secs(3600),
        })
        .map_err(|e| e.to_string())
    };
    let orders = creds(TEMPLATE_APP, TEMPLATE_SCOPES, None, false)?;
    let frontend = creds("web-frontend", &["orders.read"], Some("alice"), false)?;
    let legacy = creds("legacy-reporting", &["orders.read"], None, false)?;
    let ops = creds("platform-ops", &["admin"], None, true)?;
    let batch = creds("nightly-batch", &["reports.write"], None, false)?;
    let with = |c: &crate::demo::DemoCredentials, method: &str, path: &str, ip: &str| {
        let headers = HashMap::from([("authorization".to_owned(), format!("Bearer {}", c.token))]);
        envoy_request(method, path, "shop.demo", headers, Some(&c.cert_pem), ip)
    };
    let mut out = Vec::new();
    for i in 0..8 {
        out.push(with(&orders, "GET", &format!("/orders/{i}"), "10.0.0.1"));
        out.push(with(
            &frontend,
            "GET",
            &format!("/users/alice/orders/{i}"),
            "10.0.0.2",
        ));
    }
    out.push(with(&frontend, "GET", "/users/bob/orders/1", "10.0.0.2"));
    out.push(with(&orders, "POST", "/payments/charge", "10.0.0.1"));
    out.push(with(&legacy, "GET", "/orders/1", "10.0.0.3"));
    out.push(with(&ops, "POST", "/admin/keys/rotate", "10.0.0.4"));
    out.push(with(&batch, "PUT", "/reports/daily", "10.20.0.5"));
    out.push(envoy_request(
        "GET",
        "/orders/1",
        "shop.demo",
        HashMap::new(),
        None,
        "10.0.0.9",
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Ratio;

    fn ratio(throughput: f64, p99: i64, cpu: Option<f64>) -> Ratio {
        Ratio {
            throughput,
            p50: 0,
            p99,
            cpu,
        }
    }

    /// Each figure's median on its own: an odd count's middle, an even count's middle two
    /// averaged; no CPU figure unless every round had one.
    #[test]
    fn medians_are_taken_figure_by_figure() {
        let odd = [
            ratio(0.95, 30, Some(1.2)),
            ratio(0.85, 10, Some(1.0)),
            ratio(0.90, 20, Some(1.1)),
        ];
        assert_eq!(Ratio::median(&odd), ratio(0.90, 20, Some(1.1)));
        let even = [
            ratio(0.8, 40, Some(1.0)),
            ratio(1.0, 10, None),
            ratio(0.9, 20, Some(1.2)),
            ratio(0.7, 30, Some(1.4)),
        ];
        let median = Ratio::median(&even);
        assert!((median.throughput - 0.85).abs() < 1e-9, "{median:?}");
        assert_eq!((median.p99, median.cpu), (25, None));
        assert_eq!(
            ratio(0.906, -12, Some(1.104)).to_string(),
            "throughput 91%, p50 +0µs, p99 -12µs, server CPU 1.10×"
        );
    }
}
