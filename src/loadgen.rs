//! Load generator for a running Tollgate: drives `Check` over gRPC (TCP or a Unix socket) at a
//! fixed concurrency (closed loop) or a fixed request rate (open loop) and records latency in
//! an HDR histogram. In open loop, latency counts from each request's scheduled send time, so
//! a server that stalls cannot hide the queueing it causes (no coordinated omission).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

/// Where to send.
#[derive(Debug, Clone)]
pub enum Target {
    /// `http://host:port`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// How to send.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// This many requests in flight at all times.
    Closed {
        /// In-flight requests.
        concurrency: usize,
    },
    /// This many requests per second, whatever the server does.
    Open {
        /// Requests per second.
        rate: u64,
    },
}

/// What happened.
#[derive(Debug)]
pub struct LoadReport {
    /// Requests answered (allowed or denied).
    pub answered: u64,
    /// Answers that allowed.
    pub allowed: u64,
    /// gRPC errors and unsendable requests.
    pub errors: u64,
    /// Measured time.
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    /// CPU the server process spent during the measured time, when its pid was given.
    pub server_cpu: Option<Duration>,
}

impl LoadReport {
    /// Answers per second.
    pub fn throughput(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// A latency percentile in microseconds.
    pub fn percentile(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }

    /// Server CPU per answered request, in microseconds.
    pub fn cpu_per_request(&self) -> Option<f64> {
        self.server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / self.answered.max(1) as f64)
    }

    /// One line for humans.
    pub fn summary(&self) -> String {
        let cpu = self
            .cpu_per_request()
            .map(|us| format!("; server CPU {us:.1}µs/request"))
            .unwrap_or_default();
        format!(
            "{:.0} req/s over {:.1}s; {} answered ({} allowed, {} denied), {} errors; latency p50 {}µs p90 {}µs p99 {}µs p99.9 {}µs max {}µs{cpu}",
            self.throughput(),
            self.elapsed.as_secs_f64(),
            self.answered,
            self.allowed,
            self.answered - self.allowed,
            self.errors,
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(0.999),
            self.latency.max(),
        )
    }
}

/// Opens a channel to `target`.
pub async fn connect(target: &Target) -> Result<Channel, String> {
    match target {
        Target::Tcp(url) => Endpoint::from_shared(url.clone())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("{url}: {e}")),
        Target::Unix(path) => {
            let path = path.clone();
            Endpoint::from_static("http://tollgate.local")
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(|e| e.to_string())
        }
    }
}

#[derive(Default)]
struct Counters {
    answered: AtomicU64,
    allowed: AtomicU64,
    errors: AtomicU64,
}

/// Makes the n-th request to send.
pub type RequestSource = Arc<dyn Fn(u64) -> CheckRequest + Send + Sync>;

/// Round-robin over a fixed mix.
pub fn round_robin(requests: Vec<CheckRequest>) -> Result<RequestSource, String> {
    if requests.is_empty() {
        return Err("no requests to send".into());
    }
    Ok(Arc::new(move |n| {
        let len = requests.len() as u64;
        requests
            .get(usize::try_from(n % len).unwrap_or_default())
            .cloned()
            .unwrap_or_default()
    }))
}

/// Opens `connections` channels (HTTP/2 connections) to `target`, as Envoy's workers and
/// h2load's clients each hold their own.
pub async fn connect_all(target: &Target, connections: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        channels.push(connect(target).await?);
    }
    Ok(channels)
}

/// CPU time (user + system, all threads) a process has used, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here; in clock ticks,
    // which Linux fixes at 100 a second for user space (USER_HZ).
    let total = ticks(11)? + ticks(12)?;
    Some(Duration::from_millis(total * 10))
}

/// Sends `requests(0)`, `requests(1)`, … over `channels` (spread evenly) for `warmup` (not
/// recorded), then for `duration`; with `server_pid`, also measures that process's CPU over
/// the measured time.
pub async fn run(
    channels: &[Channel],
    mode: Mode,
    requests: RequestSource,
    (warmup, duration): (Duration, Duration),
    server_pid: Option<u32>,
) -> Result<LoadReport, String> {
    if channels.is_empty() {
        return Err("no connection to send on".into());
    }
    let channel = |n: usize| channels.get(n % channels.len()).cloned();
    let Window {
        measure_from,
        stop_at,
        cpu,
        counters,
        next,
    } = Window::start(warmup, duration, server_pid);
    let mut latency = new_histogram()?;
    match mode {
        Mode::Closed { concurrency } => {
            let mut tasks = Vec::new();
            for n in 0..concurrency.max(1) {
                let Some(channel) = channel(n) else { break };
                let mut client = AuthorizationClient::new(channel);
                let (requests, counters, next) = (requests.clone(), counters.clone(), next.clone());
                let mut histogram = new_histogram()?;
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < stop_at {
                        let request = requests(next.fetch_add(1, Ordering::Relaxed));
                        let sent = Instant::now();
                        let result = client.check(request).await;
                        record(
                            &counters,
                            &mut histogram,
                            sent,
                            measure_from,
                            check_allowed(result),
                        );
                    }
                    histogram
                }));
            }
            for task in tasks {
                latency
                    .add(task.await.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
        }
        Mode::Open { rate } => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
                Instant,
                Result<tonic::Response<CheckResponse>, tonic::Status>,
            )>();
            let mut ticker =
                tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let collector = {
                let counters = counters.clone();
                let mut histogram = new_histogram()?;
                tokio::spawn(async move {
                    while let Some((scheduled, result)) = rx.recv().await {
                        record(
                            &counters,
                            &mut histogram,
                            scheduled,
                            measure_from,
                            check_allowed(result),
                        );
                    }
                    histogram
                })
            };
            loop {
                let scheduled: Instant = ticker.tick().await.into_std();
                if scheduled >= stop_at {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                let request = requests(n);
                let Some(channel) = channel(usize::try_from(n).unwrap_or_default()) else {
                    break;
                };
                let mut client = AuthorizationClient::new(channel);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = client.check(request).await;
                    let _ = tx.send((scheduled, result));
                });
            }
            drop(tx);
            latency = collector.await.map_err(|e| e.to_string())?;
        }
    }
    report(&counters, cpu, duration, latency).await
}

/// The report of a run: the counters, the server's CPU (once its measuring task ends), the
/// measured time and the latencies.
async fn report(
    counters: &Counters,
    cpu: Option<tokio::task::JoinHandle<Option<Duration>>>,
    duration: Duration,
    latency: Histogram<u64>,
) -> Result<LoadReport, String> {
    let server_cpu = match cpu {
        Some(task) => task.await.map_err(|e| e.to_string())?,
        None => None,
    };
    Ok(LoadReport {
        server_cpu,
        answered: counters.answered.load(Ordering::Relaxed),
        allowed: counters.allowed.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed: duration,
        latency,
    })
}

/// The CPU `pid` spends between `from` and `to`, measured in a task of its own.
fn measure_cpu(pid: u32, from: Instant, to: Instant) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let at_start = process_cpu(pid);
        tokio::time::sleep_until(to.into()).await;
        Some(process_cpu(pid)?.saturating_sub(at_start?))
    })
}

/// What both load generators share for one run: when measuring starts and stops, the
/// server's CPU over that window, the counters and the request numbering.
struct Window {
    measure_from: Instant,
    stop_at: Instant,
    cpu: Option<tokio::task::JoinHandle<Option<Duration>>>,
    counters: Arc<Counters>,
    next: Arc<AtomicU64>,
}

impl Window {
    /// A run that measures `duration` after `warmup` from now (and `server_pid`'s CPU then).
    fn start(warmup: Duration, duration: Duration, server_pid: Option<u32>) -> Self {
        let measure_from = Instant::now() + warmup;
        let stop_at = measure_from + duration;
        Self {
            measure_from,
            stop_at,
            cpu: server_pid.map(|pid| measure_cpu(pid, measure_from, stop_at)),
            counters: Arc::new(Counters::default()),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// A latency histogram, 1 µs to 60 s.
fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

/// Whether a Check was answered with OK (`None`: it failed).
fn check_allowed(result: Result<tonic::Response<CheckResponse>, tonic::Status>) -> Option<bool> {
    result
        .ok()
        .map(|response| response.into_inner().status.is_some_and(|s| s.code == 0))
}

/// Counts a request sent at `sent` whose answer was `answer` (allowed or not; `None`: an
/// error), unless it was sent before `measure_from`.
fn record(
    counters: &Counters,
    histogram: &mut Histogram<u64>,
    sent: Instant,
    measure_from: Instant,
    answer: Option<bool>,
) {
    if sent < measure_from {
        return;
    }
    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
    let _ = histogram.record(micros.max(1));
    match answer {
        Some(allowed) => {
            counters.answered.fetch_add(1, Ordering::Relaxed);
            if allowed {
                counters.allowed.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The `CheckRequest` Envoy would send: URL-encoded client certificate, lower-case headers,
/// the peer address. Shared by `tollgate call` and `tollgate bench`.
pub fn envoy_request(
    method: &str,
    path: &str,
    host: &str,
    mut headers: std::collections::HashMap<String, String>,
    certificate_pem: Option<&str>,
    source_ip: &str,
) -> CheckRequest {
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request,
    };
    headers.insert(":authority".into(), host.into());
    let certificate = certificate_pem
        .map(|pem| {
            percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: source_ip.into(),
                        ..Default::default()
                    })),
                }),
                certificate,
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.to_ascii_uppercase(),
                    path: path.into(),
                    host: host.into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Peak resident set size of a process (Linux `VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One HTTP request for the forward-auth and AuthZEN benchmarks.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: hyper::Method,
    /// Path and query.
    pub path: String,
    /// Headers (a `host` among them).
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// Body.
    pub body: hyper::body::Bytes,
}

/// Makes the n-th HTTP request to send.
pub type HttpSource = Arc<dyn Fn(u64) -> HttpRequest + Send + Sync>;

/// Whether an answer (status, body) allowed.
pub type Allowed = fn(u16, &[u8]) -> bool;

/// Closed loop over HTTP/1.1: `concurrency` kept-alive connections to `addr`, one request in
/// flight on each (as nginx's and Traefik's upstream pools hold them), `requests(0)`,
/// `requests(1)`, … for `warmup` (not recorded), then for `duration`.
pub async fn run_http(
    addr: std::net::SocketAddr,
    concurrency: usize,
    requests: HttpSource,
    (warmup, duration): (Duration, Duration),
    server_pid: Option<u32>,
    allowed: Allowed,
) -> Result<LoadReport, String> {
    use http_body_util::{BodyExt, Full};
    let Window {
        measure_from,
        stop_at,
        cpu,
        counters,
        next,
    } = Window::start(warmup, duration, server_pid);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(connection);
        let (requests, counters, next) = (requests.clone(), counters.clone(), next.clone());
        let mut histogram = new_histogram()?;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let spec = requests(next.fetch_add(1, Ordering::Relaxed));
                let mut request = hyper::Request::new(Full::new(spec.body));
                *request.method_mut() = spec.method;
                match spec.path.parse() {
                    Ok(uri) => *request.uri_mut() = uri,
                    Err(_) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                request.headers_mut().extend(spec.headers);
                let sent = Instant::now();
                if sender.ready().await.is_err() {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                let answer = match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.into_body().collect().await {
                            Ok(body) => Some(allowed(status, &body.to_bytes())),
                            Err(_) => None,
                        }
                    }
                    Err(_) => None,
                };
                record(&counters, &mut histogram, sent, measure_from, answer);
            }
            histogram
        }));
    }
    let mut latency = new_histogram()?;
    for task in tasks {
        latency
            .add(task.await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    report(&counters, cpu, duration, latency).await
}
