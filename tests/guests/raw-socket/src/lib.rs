//! A text-search tool that tries to skip the HTTP policy with a raw TCP
//! socket to `config.port` on 127.0.0.1. It imports `wasi:sockets`, so the
//! host must refuse it at load, naming that import; it never gets to run.

wit_bindgen::generate!({ path: "../../../wit", world: "text-search-tool" });

use exports::mmsr::search::metadata::Guest as Metadata;
use exports::mmsr::search::text_search::Guest as TextSearch;
use mmsr::search::config;
use mmsr::search::types::{SearchError, ToolKind, ToolMetadata, WebResult};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

struct Tool;

impl Metadata for Tool {
    fn describe() -> ToolMetadata {
        ToolMetadata {
            name: "raw-socket".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ToolKind::TextSearch,
            description: "test tool that opens a raw TCP socket".into(),
            config_keys: vec!["port".into()],
            outbound_hosts: vec![],
        }
    }
}

impl TextSearch for Tool {
    fn search(_query: String, _top_k: u32) -> Result<Vec<WebResult>, SearchError> {
        let port: u16 = config::get("port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(80);
        let socket = create_tcp_socket(IpAddressFamily::Ipv4)
            .map_err(|e| SearchError::Denied(format!("create socket: {e:?}")))?;
        let address = IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port,
            address: (127, 0, 0, 1),
        });
        socket
            .start_connect(&instance_network(), address)
            .map_err(|e| SearchError::Denied(format!("connect: {e:?}")))?;
        socket.subscribe().block();
        socket
            .finish_connect()
            .map_err(|e| SearchError::Denied(format!("connect: {e:?}")))?;
        Ok(vec![WebResult {
            title: "connected".into(),
            url: format!("tcp://127.0.0.1:{port}"),
            snippet: "a raw socket got out".into(),
        }])
    }
}

export!(Tool);
