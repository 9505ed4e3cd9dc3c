//! The `wasi:http` send hook: every outgoing request of a tool passes the
//! tool's policy here and goes out through the host's one pooled client.

use super::body::{collect_request, limit_response};
use super::policy::{Origin, ToolNetPolicy};
use super::resolver::UncheckedName;
use super::{NetClient, PolicyLog};
use crate::manifest::SecretPlacement;
use http::HeaderValue;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The hooks of one call's store.
pub struct ToolHttpHooks {
    pub policy: Arc<ToolNetPolicy>,
    pub net: Arc<NetClient>,
    /// What the policy refused during this call, for the caller's error.
    pub log: Arc<PolicyLog>,
}

impl WasiHttpHooks for ToolHttpHooks {
    fn set_host_header(&mut self) -> bool {
        // reqwest derives Host from the checked URL.
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send> {
        let policy = self.policy.clone();
        let net = self.net.clone();
        let log = self.log.clone();
        Box::new(async move {
            let resp = send(&policy, &net, &log, request, options).await?;
            Ok((resp, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

/// The guest's timeout, never above the tool's.
fn clamp(asked: Option<Duration>, ceiling: Duration) -> Duration {
    asked.map_or(ceiling, |d| d.min(ceiling))
}

async fn send(
    policy: &ToolNetPolicy,
    net: &NetClient,
    log: &Arc<PolicyLog>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, Error> {
    let deny = |msg: String, err: Error| {
        tracing::warn!(tool = %policy.tool, "{msg}");
        log.record(msg);
        err
    };
    let origin = policy
        .check_origin(request.uri())
        .map_err(|m| deny(format!("request denied: {m}"), Error::HttpRequestDenied))?;
    let addrs = net
        .resolver
        .lookup(&origin.host, origin.port)
        .await
        .map_err(|e| Error::DnsError {
            rcode: Some(format!("{}: {e}", origin.host)),
            info_code: None,
        })?;
    policy.check_addresses(&origin, &addrs).map_err(|m| {
        deny(
            format!("request denied: {m}"),
            Error::DestinationIpProhibited,
        )
    })?;

    let opts = options.unwrap_or_default();
    // The first byte wait covers connect, the request body and the headers.
    let first_byte = clamp(
        match (opts.connect_timeout, opts.first_byte_timeout) {
            (Some(c), Some(f)) => Some(c + f),
            (c, f) => c.or(f),
        },
        policy.timeout,
    );
    let between_bytes = clamp(opts.between_bytes_timeout, policy.timeout);

    let (parts, body) = request.into_parts();
    let exchange = async {
        let body = collect_request(body, policy.request_bytes).await?;
        let url = with_secret_params(policy, &origin, &parts.uri)?;
        let mut headers = parts.headers;
        headers.remove(http::header::HOST);
        for secret in policy.secrets_for(&origin) {
            if let SecretPlacement::Header { name, prefix } = &secret.spec.placement {
                let value = HeaderValue::from_str(&format!("{prefix}{}", secret.value.expose()))
                    .map_err(|_| {
                        Error::InternalError(Some(format!(
                            "secret {} is not a valid header value",
                            secret.spec.env
                        )))
                    })?;
                let mut value = value;
                value.set_sensitive(true);
                // The guest's own value for this header never reaches the upstream.
                headers.insert(
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| Error::InternalError(Some("secret header name".into())))?,
                    value,
                );
            }
        }
        let mut req = net.client.request(parts.method, url).headers(headers);
        // A GET's empty body is left off, as a native client would.
        if !body.is_empty() {
            req = req.body(body);
        }
        req.send().await.map_err(|e| map_reqwest_error(&e, log))
    };
    let resp = tokio::time::timeout(first_byte, exchange)
        .await
        .map_err(|_| Error::HttpResponseTimeout)??;

    let what = origin.to_string();
    if let Some(len) = resp.content_length()
        && len > policy.response_bytes
    {
        log.record(format!(
            "response from {what} declares {len} bytes, over the response_bytes limit of {}",
            policy.response_bytes
        ));
        return Err(Error::HttpResponseBodySize(Some(policy.response_bytes)));
    }
    let resp = http::Response::from(resp);
    let (parts, body) = resp.into_parts();
    let body = limit_response(
        body,
        policy.response_bytes,
        between_bytes,
        log.clone(),
        what,
    );
    Ok(http::Response::from_parts(parts, body))
}

/// The request URL with the tool's query-parameter secrets for this origin,
/// replacing any value the guest put there.
fn with_secret_params(
    policy: &ToolNetPolicy,
    origin: &Origin,
    uri: &http::Uri,
) -> Result<reqwest::Url, Error> {
    let mut url =
        reqwest::Url::parse(&uri.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?;
    for secret in policy.secrets_for(origin) {
        if let SecretPlacement::Query { param } = &secret.spec.placement {
            let kept: Vec<&str> = url
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|seg| {
                    let key = seg.split('=').next().unwrap_or_default();
                    !seg.is_empty()
                        && url::form_urlencoded::parse(key.as_bytes())
                            .next()
                            .is_none_or(|(k, _)| k != param.as_str())
                })
                .collect();
            let value: String =
                url::form_urlencoded::byte_serialize(secret.value.expose().as_bytes()).collect();
            let mut query = kept.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("{param}={value}"));
            url.set_query(Some(&query));
        }
    }
    Ok(url)
}

/// Sorts a client error into a wasi-http error code.
pub(crate) fn map_reqwest_error(e: &reqwest::Error, log: &PolicyLog) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(unchecked) = s.downcast_ref::<UncheckedName>() {
            log.record(format!("request denied: {unchecked}"));
            return Error::DestinationIpProhibited;
        }
        source = s.source();
    }
    if e.is_timeout() {
        Error::ConnectionTimeout
    } else if e.is_connect() {
        Error::ConnectionRefused
    } else if e.is_body() || e.is_decode() {
        Error::HttpProtocolError
    } else {
        // Carry the message to the guest; its full chain goes to the log.
        tracing::debug!("upstream error: {e:?}");
        Error::InternalError(Some(error_chain(e)))
    }
}

/// An error and its causes, `: `-joined (reqwest's own text alone is terse:
/// "error sending request").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{AllowedHost, SecretSpec, ToolManifest};
    use crate::tools::ToolKind;

    #[test]
    fn query_secrets_replace_the_guests_value() {
        let mut m = ToolManifest::new("t", ToolKind::TextSearch, "t.wasm");
        m.allow_host("https://serpapi.com").unwrap();
        m.secrets.push(SecretSpec {
            env: "K".into(),
            host: AllowedHost::parse("https://serpapi.com").unwrap(),
            placement: SecretPlacement::Query {
                param: "api_key".into(),
            },
            required: true,
        });
        let p = ToolNetPolicy::from_manifest(&m, |_| Some("a b&c".into())).unwrap();
        let uri: http::Uri =
            "https://serpapi.com/search.json?q=x%20y&api_key=stolen&api%5Fkey=x&engine=google"
                .parse()
                .unwrap();
        let origin = p.check_origin(&uri).unwrap();
        let url = with_secret_params(&p, &origin, &uri).unwrap();
        assert_eq!(
            url.query(),
            Some("q=x%20y&engine=google&api_key=a+b%26c"),
            "guest's api_key dropped, the rest untouched"
        );
    }
}
