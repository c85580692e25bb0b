//! The smallest Pingora reverse proxy that does what proxy.sh asks of every proxy: one
//! upstream over pooled keep-alive connections, the client's address in X-Forwarded-For, no
//! access log. Configured by Pingora's own YAML (`-c FILE`: threads, pool size) and two
//! variables: PINGORA_LISTEN (host:port) and PINGORA_UPSTREAM (host:port).

use async_trait::async_trait;
use pingora_core::{Result, server::Server, server::configuration::Opt, upstreams::peer::HttpPeer};
use pingora_proxy::{ProxyHttp, Session};

struct Forward {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora_http::RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            upstream_request.insert_header("X-Forwarded-For", addr.ip().to_string())?;
        }
        upstream_request.insert_header("X-Forwarded-Proto", "http")?;
        Ok(())
    }
}

fn main() {
    let listen = std::env::var("PINGORA_LISTEN").expect("PINGORA_LISTEN=host:port");
    let upstream = std::env::var("PINGORA_UPSTREAM").expect("PINGORA_UPSTREAM=host:port");
    let mut server = Server::new(Some(Opt::parse_args())).expect("the Pingora server");
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Forward { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
