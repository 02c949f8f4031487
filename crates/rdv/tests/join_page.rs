//! The browser join page as the rendezvous serves it (`rdv::join_page`), over
//! real HTTP on loopback: the page and its files under `/join`, the host's
//! ICE servers in `/join/config.json`, a base path honoured, and the v3
//! routes (`/`, `/health`, codes, the generic 404) answering exactly as
//! before.

use std::net::SocketAddr;

use rdv::join_page::{JoinIce, WebIceServer};
use rdv::{Config, Rendezvous, RunningServer};

async fn start(config: Config) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(addr, Rendezvous::new(config))
        .await
        .expect("bind loopback")
}

#[tokio::test]
async fn the_page_its_files_and_config_are_served_and_v3_routes_are_unchanged() {
    let server = start(Config {
        join_ice_servers: JoinIce::new(vec![WebIceServer {
            urls: vec!["turn:10.0.0.9:3478?transport=udp".into()],
            username: Some("u".into()),
            credential: Some("p".into()),
        }]),
        ..Config::default()
    })
    .await;
    let base = server.url();
    let http = reqwest::Client::new();

    for (path, ct) in [
        ("/join", "text/html"),
        ("/join/AB2C", "text/html"),
        ("/join/app.js", "text/javascript"),
        ("/join/synth.js", "text/javascript"),
        ("/join/style.css", "text/css"),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let got = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(ct), "{path}: {got}");
        assert!(
            r.headers().contains_key("content-security-policy"),
            "{path}"
        );
        assert!(!r.text().await.unwrap().is_empty(), "{path}");
    }
    let page = http
        .get(format!("{base}/join/AB2C?code=AB2C"))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="/join/app.js""#), "{html}");
    assert!(!html.contains("%BASE%") && !html.contains("%VERSION%"));
    assert!(
        html.contains(&format!(r#"data-version="{}""#, env!("CARGO_PKG_VERSION"))),
        "{html}"
    );

    let cfg: serde_json::Value = http
        .get(format!("{base}/join/config.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cfg,
        serde_json::json!({"iceServers": [{"urls": ["turn:10.0.0.9:3478?transport=udp"], "username": "u", "credential": "p"}]})
    );

    // v3 as before: health on / and /health, JSON 404 elsewhere (never 405).
    for path in ["/", "/health"] {
        let v: serde_json::Value = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["service"], "midi-rdv", "{path}");
        assert_eq!(v["version"], 3, "{path}");
    }
    for (method, path) in [
        (reqwest::Method::POST, "/join"),
        (reqwest::Method::GET, "/join/a/b"),
        (reqwest::Method::GET, "/joinx"),
        (reqwest::Method::GET, "/code/AB2C"),
    ] {
        let r = http
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn under_a_base_path_the_page_points_at_its_files_there_and_has_no_ice_servers_by_default() {
    let server = start(Config {
        base_path: "/rdv".into(),
        ..Config::default()
    })
    .await;
    let base = server.url();
    assert!(base.ends_with("/rdv"), "{base}");
    let http = reqwest::Client::new();
    let html = http
        .get(format!("{base}/join/AB2C"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(r#"href="/rdv/join/style.css""#), "{html}");
    assert!(html.contains(r#"data-base="/rdv""#), "{html}");
    let cfg: serde_json::Value = http
        .get(format!("{base}/join/config.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg, serde_json::json!({"iceServers": []}));
    // Changed live (the host's STUN/TURN list is applied without a restart):
    // the next page load gets the new list.
    server.rdv.config().join_ice_servers.set(vec![WebIceServer {
        urls: vec!["stun:10.0.0.9".into()],
        username: None,
        credential: None,
    }]);
    let cfg: serde_json::Value = http
        .get(format!("{base}/join/config.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cfg,
        serde_json::json!({"iceServers": [{"urls": ["stun:10.0.0.9"]}]})
    );
    let outside = http
        .get(format!("http://{}/join", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 404);
    server.stop().await.unwrap();
}
