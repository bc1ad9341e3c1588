//! `hubcli auth` against a real hubcore: the credentials it writes work, removal locks the
//! client out, and a service login is refused the admin calls.

mod common;

use common::{core, hubcli, hubcli_at, runtime};
use hivehub_api::auth::ClientProfile;
use hivehub_api::{ClientType, Role};
use hivehub_client::{ClientError, HubClient};
use std::os::unix::fs::MetadataExt;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o777
}

fn clients(json: &str) -> Vec<ClientProfile> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a client list ({e}): {json}"))
}

#[test]
fn add_ls_rm_and_denied() {
    let core = core();
    let rt = runtime();

    let r = hubcli(&core, &["auth", "add", "p9", "--role", "service"]);
    r.expect_code(0);
    let key = core.home.key_file("p9");
    let token = core.home.token_file("p9");
    assert!(
        r.stdout
            .contains("added client p9 (type service, role service)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&key.display().to_string())
            && r.stdout.contains(&token.display().to_string())
            && r.stdout.contains("another host"),
        "{}",
        r.stdout
    );
    assert_eq!(mode(&key), 0o400);
    assert_eq!(mode(&token), 0o400);

    // The token logs in, as p9.
    rt.block_on(async {
        let c = core.client("p9").await;
        assert_eq!(c.client_id(), "p9");
        c.disconnect().await;
    });

    // Without --server the URL comes from run/hubcore.url.
    let r = hubcli_at(core.home.root(), None, &["auth", "ls", "--json"]);
    r.expect_code(0);
    let list = clients(&r.stdout);
    let p9 = list
        .iter()
        .find(|c| c.client_id == "p9")
        .unwrap_or_else(|| panic!("p9 missing: {}", r.stdout));
    assert_eq!(
        (p9.role, p9.client_type),
        (Role::Service, ClientType::Service)
    );

    let r = hubcli(&core, &["auth", "ls"]);
    r.expect_code(0);
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("p9 "))
        .unwrap_or_else(|| panic!("no p9 row: {}", r.stdout));
    assert_eq!(
        row.split_whitespace().take(4).collect::<Vec<_>>(),
        ["p9", "service", "service", "p9"]
    );
    assert!(
        r.stdout.lines().all(|l| l.chars().count() <= 80),
        "{}",
        r.stdout
    );

    // A service may not manage clients.
    let r = hubcli(&core, &["--login", "p9", "auth", "ls"]);
    r.expect_code(4);
    assert!(
        r.stderr.starts_with("hubcli: error: not permitted:"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    // Re-adding keeps the key and replaces the profile.
    let before = std::fs::read_to_string(&key).unwrap();
    let r = hubcli(
        &core,
        &[
            "auth", "add", "p9", "--role", "viewer", "--type", "user", "--name", "Pat Nine",
        ],
    );
    r.expect_code(0);
    assert!(r.stdout.contains("existing key kept"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before);
    let list = clients(&hubcli(&core, &["auth", "ls", "--json"]).stdout);
    let p9 = list.iter().find(|c| c.client_id == "p9").unwrap();
    assert_eq!(
        (p9.role, p9.client_type, p9.display_name.as_str()),
        (Role::Viewer, ClientType::User, "Pat Nine")
    );

    let r = hubcli(&core, &["auth", "rm", "p9"]);
    r.expect_code(0);
    assert!(r.stdout.starts_with("removed client p9"), "{}", r.stdout);
    let list = clients(&hubcli(&core, &["auth", "ls", "--json"]).stdout);
    assert!(list.iter().all(|c| c.client_id != "p9"));

    // Its token no longer logs in: through the SDK, and through hubcli (exit 3).
    let e = rt
        .block_on(HubClient::connect(core.options("p9")))
        .err()
        .expect("a removed client must be refused");
    assert!(matches!(e, ClientError::LoginRefused { .. }), "{e}");
    let r = hubcli(&core, &["--login", "p9", "auth", "ls"]);
    r.expect_code(3);
    assert!(
        r.stderr.contains("refused the login of 'p9'"),
        "{}",
        r.stderr
    );

    // Removing it again: nothing to remove is a failure (exit 1), like rm.
    let r = hubcli(&core, &["auth", "rm", "p9"]);
    r.expect_code(1);
    assert_eq!(r.stderr.trim(), "hubcli: error: no client named 'p9'");
}

#[test]
fn add_json_never_prints_the_token_and_refusal_leaves_no_key() {
    let core = core();
    let r = hubcli(
        &core,
        &["--json", "auth", "add", "dev1", "--role", "device"],
    );
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["profile"]["clientID"], "dev1");
    assert_eq!(v["profile"]["clientType"], "device");
    assert_eq!(v["keyCreated"], true);
    let token = std::fs::read_to_string(core.home.token_file("dev1")).unwrap();
    assert!(
        !r.stdout.contains(token.trim()),
        "the token must not be printed"
    );

    // A denied add does not leave a new key file behind.
    let admin_only = hubcli(&core, &["auth", "add", "svc", "--role", "service"]);
    admin_only.expect_code(0);
    let r = hubcli(
        &core,
        &["--login", "svc", "auth", "add", "x1", "--role", "admin"],
    );
    r.expect_code(4);
    assert!(!core.home.key_file("x1").exists());
    assert!(!core.home.token_file("x1").exists());
}
