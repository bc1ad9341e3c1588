//! `hubcli auth …`: the core's auth service (`auth/clients`).

use crate::cli::AuthCmd;
use crate::{format, json, line, table_width, CliError, Ctx};
use hivehub_api::auth::{
    methods, AddClientReq, AddClientResp, ClientIdReq, ClientProfile, ListClientsResp,
    RemoveClientResp, AUTH_SERVICE, CAP_CLIENTS,
};
use hivehub_api::rpc::Ack;
use hivehub_auth::KeyPair;
use hivehub_client::HubClient;
use hivehub_home::{write_atomic, SECRET_MODE};
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The `--json` result of `auth add`: where the credentials are, never the token itself (stdout
/// ends up in logs and terminals; the token lives only in its 0400 file).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AddedJson<'a> {
    profile: &'a ClientProfile,
    expires: u64,
    key_file: &'a Path,
    key_created: bool,
    token_file: &'a Path,
}

pub(crate) async fn run(
    ctx: &Ctx,
    client: &HubClient,
    cmd: AuthCmd,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match cmd {
        AuthCmd::Add {
            client_id,
            role,
            client_type,
            name,
        } => {
            let req = AddClientReq {
                client_id,
                client_type: client_type.map(Into::into),
                display_name: name,
                role,
                pub_key: String::new(),
            };
            add(ctx, client, req, out).await
        }
        AuthCmd::Ls => {
            let r: ListClientsResp = client
                .request(AUTH_SERVICE, CAP_CLIENTS, methods::LIST_CLIENTS, &Ack {})
                .await?;
            if ctx.g.json {
                json(out, &r.clients)
            } else if r.clients.is_empty() {
                line(out, "no clients")
            } else {
                line(out, &format::clients_table(&r.clients, table_width()))
            }
        }
        AuthCmd::Rm { client_id } => {
            let r: RemoveClientResp = client
                .request(
                    AUTH_SERVICE,
                    CAP_CLIENTS,
                    methods::REMOVE_CLIENT,
                    &ClientIdReq {
                        client_id: client_id.clone(),
                    },
                )
                .await?;
            if !r.removed {
                return Err(CliError::NoSuchClient(client_id));
            }
            if ctx.g.json {
                json(out, &r)
            } else {
                let sessions = match r.disconnected {
                    0 => String::new(),
                    1 => " (1 session disconnected)".into(),
                    n => format!(" ({n} sessions disconnected)"),
                };
                line(out, &format!("removed client {client_id}{sessions}"))
            }
        }
    }
}

/// Registers the client with its (possibly new) key and saves its token beside the key.
async fn add(
    ctx: &Ctx,
    client: &HubClient,
    mut req: AddClientReq,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let id = req.client_id.clone();
    let key_file = ctx.home.key_file(&id);
    let token_file = ctx.home.token_file(&id);
    ensure_private_dir(&ctx.home.certs())?;
    let (key, key_created) = KeyPair::load_or_create(&key_file)?;
    req.pub_key = key.public_key_b64();
    let resp: Result<AddClientResp, _> = client
        .request(AUTH_SERVICE, CAP_CLIENTS, methods::ADD_CLIENT, &req)
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            // Leave nothing behind from a refused attempt; an existing key is never touched.
            if key_created {
                let _ = std::fs::remove_file(&key_file);
            }
            return Err(e.into());
        }
    };
    write_atomic(&token_file, resp.token.as_bytes(), SECRET_MODE).map_err(|source| {
        CliError::Write {
            path: token_file.clone(),
            source,
        }
    })?;
    if ctx.g.json {
        return json(
            out,
            &AddedJson {
                profile: &resp.profile,
                expires: resp.expires,
                key_file: &key_file,
                key_created,
                token_file: &token_file,
            },
        );
    }
    let p = &resp.profile;
    let key_note = if key_created {
        "new key"
    } else {
        "existing key kept"
    };
    for s in [
        format!(
            "added client {} (type {}, role {})",
            p.client_id, p.client_type, p.role
        ),
        format!("key:   {} ({key_note})", key_file.display()),
        format!(
            "token: {} (expires {} UTC)",
            token_file.display(),
            format::date(resp.expires / 1000)
        ),
        format!("Both files are {id}'s credentials: keep them secret (mode 0400)."),
        format!("If {id} runs on another host, copy both to the certs/ folder of its home there."),
    ] {
        line(out, &s)?;
    }
    Ok(())
}

/// Creates `certs/` (mode 0700) when hubcli runs in a home that has none yet.
fn ensure_private_dir(dir: &PathBuf) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CliError::Write {
            path: dir.clone(),
            source,
        })
}
