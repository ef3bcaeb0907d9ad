use super::*;

fn leaf_keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_table() {
                leaf_keys(v, &key, out);
            } else {
                out.push(key);
            }
        }
    }
}

#[test]
fn every_key_is_documented_and_settable_by_environment() {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut keys = Vec::new();
    leaf_keys(&defaults, "", &mut keys);
    for key in &keys {
        assert!(
            KEYS.iter().any(|k| k.key == key),
            "key {key} has no documentation in config::KEYS"
        );
    }
    for doc in KEYS {
        let default = lookup(&defaults, doc.key);
        let value = match (doc.key, default) {
            ("data_dir", _) => "/tmp/x",
            ("microsoft.cloud", _) => "usgov",
            (k, _) if k.ends_with("listen") => "127.0.0.1:9",
            // A list of tables: the file only (refused as a variable).
            (_, Some(toml::Value::Array(_))) => continue,
            (_, Some(toml::Value::Integer(_))) => "7",
            (_, Some(toml::Value::Boolean(_))) => "false",
            _ => "value",
        };
        let vars = vec![(env_name(doc.key), value.to_string())];
        let config =
            Config::from_parts("", "test", &vars).unwrap_or_else(|e| panic!("{}: {e}", doc.key));
        let back = toml::Value::try_from(config).unwrap();
        let got = lookup(&back, doc.key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        assert_eq!(got.as_deref(), Some(value), "{}", doc.key);
    }
}

#[test]
fn example_parses_back_to_the_defaults() {
    let text = example();
    let parsed = Config::from_parts(&text, "example", &[]).unwrap();
    assert_eq!(parsed, Config::default());
    assert!(text.contains("GRAPHGATE_MICROSOFT_CLIENT_ID"));
}

#[test]
fn environment_wins_and_unknown_names_are_refused() {
    let text = "[microsoft]\ntenant = \"contoso.com\"\nclient_id = \"file\"\n";
    let vars = vec![(
        "GRAPHGATE_MICROSOFT_CLIENT_ID".to_string(),
        "env".to_string(),
    )];
    let config = Config::from_parts(text, "f.toml", &vars).unwrap();
    assert_eq!(config.microsoft.client_id, "env");
    assert_eq!(config.microsoft.tenant, "contoso.com");
    let bad = vec![("GRAPHGATE_MICROSFT_TENANT".to_string(), "x".to_string())];
    let err = Config::from_parts("", "f.toml", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("GRAPHGATE_MICROSFT_TENANT"), "{err}");
    let err = Config::from_parts("[microsoft]\ntenant = 3\n", "f.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("f.toml"), "{err}");
    let err = Config::from_parts("nonsense = 1\n", "f.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn admin_listen_is_checked() {
    let mut config = Config::default();
    assert_eq!(config.admin_listen().unwrap(), None);
    config.admin.listen = "127.0.0.1:8025".into();
    assert!(config.admin_listen().unwrap().is_some());
    config.admin.listen = "localhost".into();
    assert!(
        config
            .admin_listen()
            .unwrap_err()
            .to_string()
            .contains("GRAPHGATE_ADMIN_LISTEN")
    );
}

#[test]
fn the_cloud_sets_authority_graph_and_scope_prefix_and_explicit_urls_win() {
    let config = Config::from_parts(
        "[microsoft]\ncloud = \"usgov-dod\"\nclient_id = \"c\"\n",
        "f.toml",
        &[],
    )
    .unwrap();
    let m = &config.microsoft;
    assert_eq!(m.cloud, Cloud::UsgovDod);
    assert_eq!(m.authority(), "https://login.microsoftonline.us");
    assert_eq!(m.graph_endpoint(), "https://dod-graph.microsoft.us");
    assert_eq!(m.graph_resource(), "https://dod-graph.microsoft.us");
    assert!(config.graph_config().unwrap().message_delta);

    let config = Config::from_parts(
        "[microsoft]\ncloud = \"china\"\ngraph_url = \"http://127.0.0.1:8787\"\n",
        "f.toml",
        &[],
    )
    .unwrap();
    let m = &config.microsoft;
    assert_eq!(m.authority(), "https://login.chinacloudapi.cn");
    assert_eq!(m.graph_endpoint(), "http://127.0.0.1:8787");
    assert_eq!(
        m.graph_resource(),
        "https://microsoftgraph.chinacloudapi.cn"
    );
    assert!(!config.graph_config().unwrap().message_delta);
    assert!(m.cloud.missing_features().contains("message delta"));

    let global = MicrosoftConfig::default();
    assert_eq!(global.authority(), GLOBAL_AUTHORITY);
    assert_eq!(global.graph_resource(), GLOBAL_GRAPH);

    let err = Config::from_parts("[microsoft]\ncloud = \"mars\"\n", "f.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cloud") || err.contains("mars"), "{err}");
}

#[test]
fn graph_keys_set_the_graph_clients_retries_and_concurrency() {
    // Microsoft's numbers by default: 4 in flight per mailbox, 5 attempts.
    let defaults = Config::default().graph_config().unwrap();
    assert_eq!(defaults.concurrency_per_mailbox, 4);
    assert_eq!(defaults.retry.max_attempts, 5);
    let vars = [
        ("GRAPHGATE_GRAPH_MAX_RETRIES".to_string(), "1".to_string()),
        (
            "GRAPHGATE_GRAPH_BASE_BACKOFF_MS".to_string(),
            "20".to_string(),
        ),
    ];
    let config = Config::from_parts(
        "[graph]\nconcurrency_per_mailbox = 2\nmax_total_wait_s = 9\nrequest_timeout_s = 7\n",
        "f.toml",
        &vars,
    )
    .unwrap();
    let g = config.graph_config().unwrap();
    assert_eq!(g.concurrency_per_mailbox, 2);
    assert_eq!(g.retry.max_attempts, 2);
    assert_eq!(g.retry.base_backoff_ms, 20);
    assert_eq!(g.retry.max_total_wait_s, 9);
    assert_eq!(g.request_timeout_s, 7);
    // 0 in flight would send nothing: refused with the key's name.
    let zero = Config::from_parts("[graph]\nconcurrency_per_mailbox = 0\n", "f.toml", &[])
        .unwrap()
        .graph_config()
        .unwrap_err()
        .to_string();
    assert!(zero.contains("graph.concurrency_per_mailbox"), "{zero}");
}
