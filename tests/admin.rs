//! The admin command line on a data directory: org import (TOML and CSV),
//! account create / list / disable, password reset — and its refusal to run
//! while a server holds the directory.

mod common;

use std::process::{Command, Output};

use common::*;
use protocol::ErrorCode;

fn admin(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_villagehub"))
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("VILLAGEHUB_LOG", "warn")
        .output()
        .expect("run villagehub admin")
}

fn ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "admin failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test]
async fn admin_commands_work_on_the_data_directory_and_refuse_a_running_server() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let toml = temp.path().join("org.toml");
    std::fs::write(
        &toml,
        r#"
[[district]]
name = "宝山区"
[[district.town]]
name = "顾村镇"
[[district.town.group]]
name = "刘行村"
kind = "village"
secretary = { name = "王一", phone = "13700000001" }
"#,
    )
    .unwrap();
    let out = ok(admin(&dir, &["org", "import", toml.to_str().unwrap()]));
    assert!(out.contains("1 districts, 1 towns, 1 groups, 1 secretary accounts created"), "{out}");
    let password = out.split("(password: ").nth(1).unwrap().split(')').next().unwrap().to_string();
    // The CSV adds a group to the same town; importing again changes nothing.
    let csv = temp.path().join("org.csv");
    std::fs::write(
        &csv,
        "district,town,group,kind,secretary_name,secretary_phone\n\
         宝山区,顾村镇,刘行村,village,王一,13700000001\n\
         宝山区,顾村镇,菊泉新城,neighbourhood,赵二,13700000002\n",
    )
    .unwrap();
    let out = ok(admin(&dir, &["org", "import", csv.to_str().unwrap()]));
    assert!(out.contains("0 districts, 0 towns, 1 groups, 1 secretary accounts created"), "{out}");
    let out = ok(admin(&dir, &["org", "import", csv.to_str().unwrap()]));
    assert!(out.contains("0 districts, 0 towns, 0 groups, 0 secretary"), "{out}");

    // Accounts: a town officer of 顾村镇 (town id 2: the second change) and
    // a member; list; disable; reset a password.
    ok(admin(
        &dir,
        &[
            "account",
            "create",
            "--phone",
            "13700000009",
            "--name",
            "孙官",
            "--password",
            "officer-123",
            "--office",
            "town:2",
            "--party",
        ],
    ));
    let out = ok(admin(
        &dir,
        &[
            "account",
            "create",
            "--phone",
            "13700000010",
            "--name",
            "李民",
            "--password",
            "member-123",
            "--group",
            "3",
        ],
    ));
    assert!(out.contains("created account"), "{out}");
    let out = ok(admin(&dir, &["account", "list"]));
    assert!(out.contains("13700000001") && out.contains("刘行村#3:secretary"), "{out}");
    assert!(out.contains("town officer of 顾村镇#2") && out.contains("yes"), "{out}");
    let out = ok(admin(&dir, &["account", "list", "--group", "3"]));
    assert!(out.contains("李民") && !out.contains("赵二"), "{out}");
    ok(admin(&dir, &["account", "disable", "--phone", "13700000010"]));
    let out = ok(admin(&dir, &["password", "reset", "--phone", "13700000001", "--password", "new-secret-1"]));
    assert!(out.contains("reset"), "{out}");
    let refused = admin(&dir, &["account", "disable", "--phone", "19999999999"]);
    assert!(!refused.status.success());

    // A server on the same directory: the admin command is refused.
    let server = Server::start_in(&dir, &["--login-attempts-per-address", "1000"]);
    let busy = admin(&dir, &["account", "list"]);
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(stderr.contains("in use by another villagehub process"), "{stderr}");

    // What the commands did is what the server serves.
    assert_eq!(server.login("13700000001", &password).await.unwrap_err().0, 401);
    let (_, welcome) = server.client_with_password("13700000001", "new-secret-1").await;
    assert_eq!(welcome.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), vec!["刘行村"]);
    let (_, welcome) = server.client_with_password("13700000009", "officer-123").await;
    assert_eq!(welcome.groups.len(), 2, "a town officer sees every group of the town");
    assert!(welcome.account.party);
    let (status, error) = server.login("13700000010", "member-123").await.unwrap_err();
    assert_eq!((status, error.code), (403, ErrorCode::Forbidden));
}
