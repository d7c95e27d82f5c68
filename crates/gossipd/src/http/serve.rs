//! The HTTP server loop: HTTP/1.1 through hyper with limits that `axum::serve` does not have.
//!
//! - At most `max_conns` connections are open at once (a semaphore taken before `accept`):
//!   the next connection waits in the kernel's listen backlog until one closes.
//! - A connection must send a request's headers within `header_timeout` of the server
//!   starting to wait for them; hyper starts that timer again while a kept-alive connection
//!   waits for its next request, so the same bound closes idle connections too. A blocking
//!   query (`?index=&wait=`) is not idle: its headers arrived, and its wait is bounded (10 min).
//! - On shutdown every connection is asked to finish its current request and close.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The server's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once.
    pub max_conns: usize,
    /// Time allowed for a request's headers, and for a kept-alive connection's silence.
    pub header_timeout: Duration,
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `app` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let slots = std::sync::Arc::new(Semaphore::new(limits.max_conns));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let mut warned = false;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            () = stopped(&mut stop) => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        if slots.available_permits() == 0 && !warned {
            warned = true;
            tracing::warn!(
                max = limits.max_conns,
                "HTTP connection limit reached: new connections wait (--http-max-conns)"
            );
        } else if slots.available_permits() > limits.max_conns / 2 {
            warned = false;
        }
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "HTTP connection closed");
                    }
                    return;
                }
                () = stopped(&mut stop) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
}
