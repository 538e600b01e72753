//! The configuration's tests: precedence, defaults, and the errors that
//! name their setting.

use super::*;

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:7000\"\ndatabase_url = \"sqlite://file.db\"\nshutdown_grace = \"3s\"\n",
    )
    .expect("write");
    let from_file = Config::resolve(&Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    })
    .expect("resolve");
    assert_eq!(from_file.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(from_file.database_url, "sqlite://file.db");
    assert_eq!(from_file.shutdown_grace, Duration::from_secs(3));

    let flags = Config::resolve(&Overrides {
        config: Some(path),
        listen: Some("127.0.0.1:0".into()),
        ..Overrides::default()
    })
    .expect("resolve");
    assert_eq!(flags.listen.to_string(), "127.0.0.1:0");
    assert_eq!(flags.database_url, "sqlite://file.db");
}

#[test]
fn unknown_file_keys_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "listn = \"x\"\n").expect("write");
    assert!(
        Config::resolve(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .is_err()
    );
    assert!(
        Config::resolve(&Overrides {
            listen: Some("nowhere".into()),
            database_url: Some("sqlite::memory:".into()),
            ..Overrides::default()
        })
        .is_err()
    );
    assert!(parse_duration("20s").is_ok());
    assert!(parse_duration("20h").is_ok());
    assert!(parse_duration("20d").is_err());
}

#[test]
fn rate_settings_come_from_the_file_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "database_url = \"sqlite://file.db\"\niam_rate_per_account = 5.0\n\
         iam_burst_per_account = 3\nrate_sharing = \"local\"\nbatch_concurrency = 32\n",
    )
    .expect("write");
    let config = Config::resolve(&Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    })
    .expect("resolve");
    assert_eq!(config.rates.iam.per_second, 5.0);
    assert_eq!(config.rates.iam.burst, 3);
    assert_eq!(config.rates.sharing, RateSharing::Local);
    assert_eq!(config.rates.batch_concurrency, 32);
    std::fs::write(&path, "rate_sharing = \"everywhere\"\n").expect("write");
    let error = Config::resolve(&Overrides {
        config: Some(path),
        database_url: Some("sqlite://file.db".into()),
        ..Overrides::default()
    })
    .expect_err("invalid");
    assert!(error.to_string().contains(env::RATE_SHARING), "{error}");
}

#[test]
fn passwords_are_masked() {
    assert_eq!(
        mask_password("postgres://svc:s3cret@db:5432/slrgov"),
        "postgres://svc@db:5432/slrgov"
    );
    assert_eq!(
        mask_password("postgres://postgres@127.0.0.1/test"),
        "postgres://postgres@127.0.0.1:5432/test"
    );
}
