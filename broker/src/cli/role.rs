//! `warden role ...`: roles and who is a member. Rules name roles with
//! `warden acl add --role NAME`.

use anyhow::Context;
use clap::Subcommand;
use warden_auth::AdminStore;

use super::output::{print_json, print_text, Table};
use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role.
    Add { name: String },
    /// Delete a role and its rules (refused while it has members).
    Remove { name: String },
    /// List roles.
    List,
    /// Make USER a member of ROLE.
    Grant { role: String, user: String },
    /// Take USER out of ROLE.
    Revoke { role: String, user: String },
}

pub async fn run(cmd: RoleCommand, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    match cmd {
        RoleCommand::Add { name } => {
            store
                .create_role(&name)
                .await
                .with_context(|| format!("cannot add role {name:?}"))?;
            done(json, &name, None, "added")?;
        }
        RoleCommand::Remove { name } => {
            store
                .delete_role(&name)
                .await
                .with_context(|| format!("cannot remove role {name:?}"))?;
            done(json, &name, None, "removed")?;
        }
        RoleCommand::List => {
            let roles = store.list_roles().await.context("cannot list roles")?;
            if json {
                print_json(&roles)?;
            } else {
                let mut table = Table::new(&["role", "members"]);
                for role in roles {
                    table.row(vec![role.name, role.members.join(",")]);
                }
                table.print()?;
            }
        }
        RoleCommand::Grant { role, user } => {
            store
                .grant(&role, &user)
                .await
                .with_context(|| format!("cannot grant role {role:?} to user {user:?}"))?;
            done(json, &role, Some(&user), "granted")?;
        }
        RoleCommand::Revoke { role, user } => {
            store
                .revoke(&role, &user)
                .await
                .with_context(|| format!("cannot revoke role {role:?} from user {user:?}"))?;
            done(json, &role, Some(&user), "revoked")?;
        }
    }
    Ok(Outcome::Success)
}

fn done(json: bool, role: &str, user: Option<&str>, what: &str) -> anyhow::Result<()> {
    match (json, user) {
        (true, Some(user)) => {
            print_json(&serde_json::json!({ "role": role, "user": user, "result": what }))
        }
        (true, None) => print_json(&serde_json::json!({ "role": role, "result": what })),
        (false, Some(user)) if what == "granted" => {
            print_text(&format!("user {user} is now a member of role {role}\n"))
        }
        (false, Some(user)) => print_text(&format!(
            "user {user} is no longer a member of role {role}\n"
        )),
        (false, None) => print_text(&format!("role {role}: {what}\n")),
    }
}
