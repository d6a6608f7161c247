//! What the hub may believe about the client of a request: its address, whether it came
//! over TLS, and whether a browser sent it from the hub's own pages. `X-Forwarded-*`
//! headers are believed only from a configured trusted proxy; anyone can write them.

use std::net::IpAddr;

use actix_web::http::Method;
use actix_web::HttpRequest;

use crate::settings::Settings;

fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_trusted(settings: &Settings, ip: IpAddr) -> bool {
    settings
        .trusted_proxies
        .iter()
        .any(|p| p.parse::<IpAddr>().is_ok_and(|p| p == ip))
}

/// True when the TCP peer is a trusted proxy, so its forwarding headers count.
fn via_trusted_proxy(req: &HttpRequest, settings: &Settings) -> bool {
    req.peer_addr()
        .is_some_and(|peer| is_trusted(settings, peer.ip()))
}

/// The client's address: the TCP peer, or, behind trusted proxies, the nearest
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn address(req: &HttpRequest, settings: &Settings) -> String {
    let peer = req.peer_addr().map(|a| a.ip());
    if !peer.is_some_and(|ip| is_trusted(settings, ip)) {
        return peer.map(|ip| ip.to_string()).unwrap_or_default();
    }
    header(req, "x-forwarded-for")
        .into_iter()
        .flat_map(|list| list.rsplit(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(settings, *ip))
        .or(peer)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// The hub's address as this client reaches it: `public_url` when set, else the scheme
/// and `Host` of the request.
pub fn public_base(req: &HttpRequest, settings: &Settings) -> String {
    if !settings.public_url.is_empty() {
        return settings.public_url.trim_end_matches('/').to_string();
    }
    let scheme = if over_tls(req, settings) {
        "https"
    } else {
        "http"
    };
    let info = req.connection_info();
    format!("{scheme}://{}", info.host())
}

/// Whether the client reached the hub over TLS (the hub speaks plain HTTP itself, so
/// only a trusted proxy's `X-Forwarded-Proto: https` says so).
pub fn over_tls(req: &HttpRequest, settings: &Settings) -> bool {
    via_trusted_proxy(req, settings)
        && header(req, "x-forwarded-proto").is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// The hub's own origin as the browser sees it: scheme and `Host`.
fn own_origin(req: &HttpRequest, settings: &Settings) -> Option<String> {
    let host = via_trusted_proxy(req, settings)
        .then(|| header(req, "x-forwarded-host"))
        .flatten()
        .or_else(|| header(req, "host"))?;
    let scheme = if over_tls(req, settings) {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}", host.trim()))
}

/// Whether a request authenticated by the session cookie may write: reads always may; a
/// write must not come from another site. Browsers send `Origin` (or at least
/// `Sec-Fetch-Site`) with every cross-site write; a client that sends neither is not a
/// browser being tricked.
pub fn same_site_write(req: &HttpRequest, settings: &Settings) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    match header(req, "origin") {
        Some(origin) => own_origin(req, settings).is_some_and(|own| own == origin.trim()),
        None => !matches!(
            header(req, "sec-fetch-site"),
            Some("cross-site" | "same-site")
        ),
    }
}
