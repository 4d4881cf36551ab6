//! `tui --connect HOST:PORT`: the gRPC client. One thread runs a single-threaded tokio
//! runtime: it connects, reads `ListPools` and each pool's `GetState`, follows `Watch` at
//! the refresh interval (items again every [`super::items_every`] readings), and carries
//! out the commands (`Draw`, `Update`) as tasks of their own, so a long `d 10000` never
//! stalls the readings. A lost connection is a log line; `r` reconnects. Nothing here ends
//! the dashboard.

use std::sync::mpsc::Sender;
use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tonic::transport::{Channel, Endpoint};

use super::request::{draws_line, update_line, Call};
use super::{items_every, Event, Job, Reading, Source};
use crate::service::proto::reward_pool_service_client::RewardPoolServiceClient;
use crate::service::proto::{
    DrawRequest, DrawResponse, GetStateRequest, ListPoolsRequest, WatchRequest,
};
use crate::Failure;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command (or one item reading) may take before it is given up (logged).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Client = RewardPoolServiceClient<Channel>;

/// The endpoint of `address` (`HOST:PORT`, or a URL).
///
/// # Errors
/// An address that is no URI (bad input).
pub(super) fn endpoint(address: &str) -> Result<Endpoint, Failure> {
    let uri =
        if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| Failure::bad_input(anyhow!("--connect {address:?}: not HOST:PORT: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true))
}

/// Starts the network thread for `endpoint` (`address` names it in the log).
///
/// # Errors
/// No thread or runtime could be started.
pub(super) fn start(
    address: &str,
    endpoint: Endpoint,
    refresh: Duration,
    events: Sender<Event>,
) -> Result<Source, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start the async runtime")))?;
    let (jobs, inbox) = unbounded_channel();
    let link = Link { address: address.to_owned(), endpoint, refresh, events };
    std::thread::Builder::new()
        .name("rewardpool-tui-net".into())
        .spawn(move || runtime.block_on(link.run(inbox)))
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start a thread")))?;
    Ok(Source::Remote(jobs))
}

/// How a session ended.
enum Ended {
    /// The dashboard is leaving (the jobs' sender is gone).
    Quit,
    /// `r`: connect again now.
    Reload,
    /// The connection failed or the server ended the stream: why.
    Lost(String),
}

/// The network side's fixed parts.
struct Link {
    address: String,
    endpoint: Endpoint,
    refresh: Duration,
    events: Sender<Event>,
}

impl Link {
    /// Sends a reading to the dashboard (gone: nothing to do, the thread ends soon).
    fn send(&self, reading: Reading) {
        let _ = self.events.send(Event::Reading(reading));
    }

    /// Connects, follows, and after a lost connection waits for `r`; until the dashboard
    /// leaves.
    async fn run(self, mut jobs: UnboundedReceiver<Job>) {
        loop {
            let ended = match self.endpoint.connect().await {
                Ok(channel) => {
                    self.send(Reading::Log(format!("connected to {}", self.address)));
                    self.session(Client::new(channel), &mut jobs).await
                }
                Err(e) => {
                    Ended::Lost(format!("cannot connect to {}: {}", self.address, deepest(&e)))
                }
            };
            match ended {
                Ended::Quit => return,
                Ended::Reload => self.send(Reading::Log("reconnecting".into())),
                Ended::Lost(why) => {
                    self.send(Reading::Log(format!("error (r reconnects): {why}")));
                    if !self.wait_for_reload(&mut jobs).await {
                        return;
                    }
                }
            }
        }
    }

    /// Until `r` (true) or the dashboard leaves (false); other commands are refused.
    async fn wait_for_reload(&self, jobs: &mut UnboundedReceiver<Job>) -> bool {
        while let Some(job) = jobs.recv().await {
            if job.call == Call::Reload {
                self.send(Reading::Log(format!("reconnecting to {}", self.address)));
                return true;
            }
            self.send(Reading::Log(format!("error: {}: not connected (r reconnects)", job.line)));
        }
        false
    }

    /// One connection: the pools, the items, then the Watch stream and the commands.
    async fn session(&self, mut client: Client, jobs: &mut UnboundedReceiver<Job>) -> Ended {
        match client.list_pools(ListPoolsRequest {}).await {
            Ok(list) => self.send(Reading::Pools(list.into_inner())),
            Err(status) => return Ended::Lost(format!("ListPools: {}", said(&status))),
        }
        let interval_ms = u32::try_from(self.refresh.as_millis()).unwrap_or(u32::MAX);
        let request = WatchRequest { pool: String::new(), interval_ms };
        let mut watch = match client.watch(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => return Ended::Lost(format!("Watch: {}", said(&status))),
        };
        let every = items_every(self.refresh);
        let mut readings: u32 = 0;
        loop {
            tokio::select! {
                message = watch.message() => match message {
                    Ok(Some(reading)) => {
                        // A failed or stopping pool answers no GetState: not asked (its
                        // error is in the reading), so the log is not flooded.
                        let pools: Vec<String> = reading
                            .pools
                            .iter()
                            .filter(|p| p.state == "running")
                            .map(|p| p.pool.clone())
                            .collect();
                        self.send(Reading::Watch(reading));
                        if readings.is_multiple_of(every) {
                            self.read_items(&client, pools);
                        }
                        readings = readings.wrapping_add(1);
                    }
                    Ok(None) => return Ended::Lost("the server ended the Watch stream".into()),
                    Err(status) => return Ended::Lost(format!("connection lost: {}", said(&status))),
                },
                job = jobs.recv() => match job {
                    None => return Ended::Quit,
                    Some(Job { call: Call::Reload, .. }) => return Ended::Reload,
                    Some(job) => {
                        let events = self.events.clone();
                        tokio::spawn(command(client.clone(), job, events));
                    }
                },
            }
        }
    }

    /// Reads each pool's items (a task: the Watch loop goes on meanwhile).
    fn read_items(&self, client: &Client, pools: Vec<String>) {
        let mut client = client.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            for pool in pools {
                let asked = client.get_state(GetStateRequest { pool: pool.clone() });
                let line = match tokio::time::timeout(CALL_TIMEOUT, asked).await {
                    Ok(Ok(state)) => Reading::State(state.into_inner()),
                    Ok(Err(status)) => {
                        Reading::Log(format!("error: GetState {pool}: {}", said(&status)))
                    }
                    Err(_) => Reading::Log(format!("error: GetState {pool}: no answer")),
                };
                if events.send(Event::Reading(line)).is_err() {
                    return;
                }
            }
        });
    }
}

/// Carries out one command; its answer (or error) is a log line, then the pool's items
/// are read again so the bars show it at once.
async fn command(mut client: Client, job: Job, events: Sender<Event>) {
    let Job { call, line } = job;
    let (pool, answer) = match call {
        Call::Draw(requests) => {
            let pool = requests.first().map(|r| r.pool.clone()).unwrap_or_default();
            let answer = tokio::time::timeout(CALL_TIMEOUT, draw(&mut client, requests)).await;
            let answer = answer.unwrap_or_else(|_| Err("no answer within 30 s".into()));
            (pool, answer.map(|answers| draws_line(&answers)))
        }
        Call::Update(request) => {
            let pool = request.pool.clone();
            let answer = tokio::time::timeout(CALL_TIMEOUT, client.update(request)).await;
            let answer = match answer {
                Ok(Ok(response)) => Ok(update_line(&response.into_inner())),
                Ok(Err(status)) => Err(said(&status)),
                Err(_) => Err("no answer within 30 s".into()),
            };
            (pool, answer)
        }
        // Handled by the session (it reconnects).
        Call::Reload => return,
    };
    let log = match answer {
        Ok(said) => said,
        Err(why) => format!("error: {line}: {why}"),
    };
    let _ = events.send(Event::Reading(Reading::Log(log)));
    if let Ok(state) = client.get_state(GetStateRequest { pool }).await {
        let _ = events.send(Event::Reading(Reading::State(state.into_inner())));
    }
}

/// Sends `requests` on one Draw stream and collects the answers (one per draw, in order).
async fn draw(
    client: &mut Client,
    requests: Vec<DrawRequest>,
) -> Result<Vec<DrawResponse>, String> {
    let expected: usize =
        requests.iter().map(|r| usize::try_from(r.count.max(1)).unwrap_or(1)).sum();
    let mut stream =
        client.draw(tokio_stream::iter(requests)).await.map_err(|s| said(&s))?.into_inner();
    let mut answers = Vec::with_capacity(expected);
    while answers.len() < expected {
        match stream.message().await {
            Ok(Some(answer)) => answers.push(answer),
            Ok(None) => break,
            Err(status) if answers.is_empty() => return Err(said(&status)),
            // Some answers came: show them; the error follows as its own line.
            Err(status) => {
                return Err(format!("{} after {} answers", said(&status), answers.len()))
            }
        }
    }
    Ok(answers)
}

/// A status as one phrase: its code and message.
fn said(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The innermost cause of an error, which says what happened ("Connection refused").
fn deepest(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
