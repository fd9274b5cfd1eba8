//! Starting and stopping one node: open the store, start the log writer,
//! accept connections up to a cap, and on SIGTERM or ctrl-c drain in order —
//! stop accepting, let every session deliver what is committed and close
//! with "going away", then let the writer finish and stop.

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::auth::TokenKey;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::fanout::Fanout;
use crate::http::{router, AppState};
use crate::hub::Hub;
use crate::log::Log;
use crate::store::Store;

/// How long sessions get to flush and close on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's state before it listens: store open, directory loaded, log
/// writer running. Used by `serve` and by commands that write without
/// serving (demo data, bench seeding).
pub struct Node {
    pub hub: Arc<Hub>,
    writer: std::thread::JoinHandle<()>,
    /// The data directory is ours until the node is dropped.
    _lock: crate::lock::DataDirLock,
    /// Cluster mode: the task following Redis.
    feed: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    pub fn open(config: Config) -> anyhow::Result<Node> {
        let lock = crate::lock::DataDirLock::acquire(&config.data_dir)?;
        let store = Arc::new(Store::open(&config.data_dir)?);
        let directory = Arc::new(RwLock::new(store.load_directory()?));
        let fanout = Arc::new(Fanout::default());
        let writer_conn = store.open_writer(config.sync)?;
        store.start_checkpointer(config.sync)?;
        let (log, writer) = Log::start(&store, writer_conn, directory.clone(), fanout.clone())?;
        let tokens = TokenKey::load_or_create(config.token_key.as_deref(), &config.data_dir)?;
        let cluster = match &config.redis {
            Some(redis) => {
                let cluster = Cluster::new(redis.clone(), &store)?;
                log.set_cluster(cluster.clone());
                Some(cluster)
            }
            None => None,
        };
        let hub = Arc::new(Hub::new(config, store, directory, fanout, log, tokens));
        // Started once the hub exists: the feed stores pictures in its
        // images directory.
        let feed = match cluster {
            Some(cluster) => Some(cluster.start_feed(
                hub.log.clone(),
                hub.directory.clone(),
                &hub.store,
                hub.images.clone(),
            )?),
            None => None,
        };
        Ok(Node { hub, writer, feed, _lock: lock })
    }

    /// Cluster mode: waits until this node has caught up with Redis.
    pub async fn wait_live(&self, timeout: Duration) -> bool {
        match self.hub.log.cluster() {
            Some(cluster) => cluster.wait_live(timeout).await,
            None => true,
        }
    }

    /// Stops the log writer after it has committed everything queued.
    pub async fn close(self) {
        if let Some(feed) = self.feed {
            feed.abort();
        }
        self.hub.log.close().await;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// Serves until `stop` resolves, then drains and returns.
pub async fn serve(
    node: Node,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let hub = node.hub.clone();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let app = router(AppState { hub: hub.clone(), shutdown: shutdown_rx });
    let listener = CappedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(hub.config.max_connections)),
        hub: hub.clone(),
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move {
            let _ = stopped_rx.await;
        });
    let server = tokio::spawn(server.into_future());
    let sweeper = tokio::spawn(crate::governance::run_sweeper(hub.clone()));
    let live = tokio::spawn(crate::live::run(hub.clone()));
    let presence = tokio::spawn(crate::presence::run(hub.clone()));

    stop.await;
    sweeper.abort();
    live.abort();
    presence.abort();
    tracing::info!("shutting down: no new connections, draining sessions");
    let _ = stopped_tx.send(());
    let _ = shutdown_tx.send(true);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while hub.metrics.connections.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Plain HTTP requests still in flight get the rest of the deadline.
    let _ = tokio::time::timeout_at(deadline, server).await;
    drop(hub);
    node.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a SIGTERM that arrives just after the server says it
/// listens must drain it, not kill it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

/// Accepts TCP connections while fewer than `--max-connections` are open.
/// Past the cap a new connection is closed at once — refused cleanly, and
/// the process never runs out of file descriptors for its store.
pub struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    hub: Arc<Hub>,
}

/// The client's address, as the handlers see it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, CappedListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, CappedListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// A socket that holds its connection slot until it is dropped — through
/// the WebSocket upgrade, since hyper hands this same object on.
pub struct Capped {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for CappedListener {
    type Io = Capped;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Capped, SocketAddr) {
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                        self.hub.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    return (Capped { stream, _permit: permit }, peer);
                }
                Err(e) => {
                    // EMFILE and friends: back off rather than spin; the
                    // listener itself is still fine.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for Capped {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
