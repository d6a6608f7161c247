//! The graceful stop behind [`super::Application::run_until`]: no new connections, an
//! answer for every request already sent, event streams told to reconnect, and (in
//! `run_until`) every queued write committed before the process exits.
//!
//! actix-web's own graceful stop is not used for the connections: it closes idle
//! keep-alive connections at once, and a request a client has just sent down one of them
//! is cut off unanswered, leaving the client unable to tell whether its POST happened.
//! Here the listening socket admits no new connection first, then every answer carries
//! `Connection: close`, so each client closes its own connection after its answer, and
//! its reconnection is refused once the hub has closed the port. A connection left idle
//! is closed when its keep-alive period (5 s) runs out, as at any other time.

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;
use tokio::sync::Notify;

use crate::actors::events::{CloseStreams, EventBus};

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed by this call, not
/// when the future is first polled, so from here on neither signal kills the process
/// outright.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name} received: stopping gracefully");
    })
}

/// The open HTTP connections (idle keep-alive ones included) and whether the hub is
/// stopping.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    closing: AtomicBool,
    all_closed: Notify,
}

impl Connections {
    /// Counts a new connection for as long as it lives: the guard kept in its extensions
    /// is dropped with it.
    pub fn opened(self: &Arc<Self>, extensions: &mut Extensions) {
        self.open.fetch_add(1, Ordering::AcqRel);
        extensions.insert(Open(self.clone()));
    }

    /// Waits until no connection is open or `grace` has passed; how many are still open.
    async fn close_within(&self, grace: Duration) -> usize {
        let all_closed = async {
            loop {
                // Registered before the count is read, so a close in between still wakes it.
                let closed = self.all_closed.notified();
                if self.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                closed.await;
            }
        };
        let _ = tokio::time::timeout(grace, all_closed).await;
        self.open.load(Ordering::Acquire)
    }
}

/// One open connection, counted while it lives.
struct Open(Arc<Connections>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// Middleware: once the hub is stopping, every answer closes its connection.
pub async fn close_when_stopping(
    connections: web::Data<Connections>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    if connections.closing.load(Ordering::Acquire) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// What the stop needs, made when the server is built.
pub struct Drain {
    /// A second handle on the server's listening socket.
    pub listener: TcpListener,
    pub connections: Arc<Connections>,
    /// How long requests in flight may take to finish (`shutdown_grace_seconds`).
    pub grace: Duration,
}

impl Drain {
    /// Stops `server` gracefully; event streams are ended through `events`.
    pub async fn run(self, server: ServerHandle, events: Addr<EventBus>) {
        admit_no_more(&self.listener);
        // Every answer from now on closes its connection, and every event stream ends
        // (a long-lived stream would otherwise hold the stop for the whole grace).
        self.connections.closing.store(true, Ordering::Release);
        events.do_send(CloseStreams);
        let open = self.connections.close_within(self.grace).await;
        if open > 0 {
            tracing::warn!(
                open,
                "connections still open after the grace period are closed"
            );
        }
        server.stop(false).await;
    }
}

/// Makes `listener` admit no new connection, on Linux: it drops every packet that would
/// start one, so a client connecting from now on is refused when its retransmission finds
/// the port closed (about a second later), while connections the kernel had already
/// completed are still accepted and answered. The socket itself stays open and listening,
/// so actix's accept thread sees no error; it closes when the server stops. (Closing or
/// shutting it down here instead would reset connections waiting to be accepted, and make
/// the accept thread log errors.)
#[cfg(target_os = "linux")]
fn admit_no_more(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // A classic BPF socket filter of one instruction: keep 0 bytes of every packet.
    let mut drop_all = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let program = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_mut_ptr(),
    };
    // SAFETY: `program` and the instruction it points to outlive the call, which copies
    // them into the kernel.
    let failed = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::addr_of!(program).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    } != 0;
    if failed {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot stop admitting connections; they are admitted until the server stops"
        );
    }
}

/// Elsewhere the socket admits connections until the server stops.
#[cfg(not(target_os = "linux"))]
fn admit_no_more(_: &TcpListener) {}
