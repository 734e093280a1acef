//! Start-up: the operator key bootstrap and the demo.

use crate::helpers::*;
use std::path::PathBuf;

#[tokio::test]
async fn the_first_start_makes_an_operator_key_file_only_its_owner_can_read() {
    if crate::ON_POSTGRES {
        // Sled-only by nature: the key file lives in the data dir (with --database-url the key must be given).
        return;
    }
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.operator_key = None
    })
    .await;
    let file = app.data_dir.path().join("db").join("operator.key");
    let key = std::fs::read_to_string(&file)
        .expect("operator.key written")
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(key.len() >= 40);
    app.get("/admin/tenants", &key).await.assert_ok();
    app.get("/admin/tenants", OPERATOR_KEY)
        .await
        .assert_error(401, "unauthorized");

    // Restarted without an environment key, the stored hash still admits the same key.
    let app = spawn_with(app.stop().await, |args| args.operator_key = None).await;
    app.get("/admin/tenants", &key).await.assert_ok();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        key,
        "not regenerated"
    );
}

#[tokio::test]
async fn demo_loads_a_tenant_a_key_and_registrations_into_an_empty_database_only() {
    let demo_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/demo");
    let key_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo_dir.join("key.json")).unwrap()).unwrap();
    let demo_key = key_file["key"].as_str().unwrap().to_owned();
    let with_demo = |args: &mut registrar::config::ServeArgs| {
        args.demo = true;
        args.demo_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/demo");
    };

    let app = spawn_with(tempfile::tempdir().unwrap(), with_demo).await;
    let listed = app.get("/courseRegistrations/demo", &demo_key).await;
    let count = listed.assert_ok().as_array().unwrap().len();
    assert!(count >= 3);

    let app = spawn_with(app.stop().await, with_demo).await;
    let listed = app.get("/courseRegistrations/demo", &demo_key).await;
    assert_eq!(
        listed.assert_ok().as_array().unwrap().len(),
        count,
        "not loaded twice"
    );
}
