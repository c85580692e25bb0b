//! Protocol switches (WebSocket and other `Upgrade`s): once the upstream answered 101 and
//! hyper handed both connections over, bytes are copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

/// Joins the client's and the upstream's upgraded connections in the background. The task
/// is tracked, so a draining shutdown waits for tunnels too (up to the drain timeout).
pub(crate) fn tunnel(tasks: &TaskTracker, client: OnUpgrade, upstream: OnUpgrade) {
    tasks.spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
            Err(error) => tracing::debug!(%error, "tunnel failed"),
        }
    });
}
