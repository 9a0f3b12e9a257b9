//! The batch envelope's `platform` and `process_uuid`.

use std::sync::Mutex;

/// The OS name as Python's `platform.system()` reports it (`Linux`, `Darwin`, `Windows`, …).
pub fn platform_name() -> &'static str {
    match std::env::consts::OS {
        "linux" | "android" => "Linux",
        "macos" | "ios" => "Darwin",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        "openbsd" => "OpenBSD",
        "netbsd" => "NetBSD",
        "dragonfly" => "DragonFly",
        "solaris" | "illumos" => "SunOS",
        other => other,
    }
}

static PROCESS_UUID: Mutex<Option<(u32, String)>> = Mutex::new(None);

/// A uuid4 identifying this process, shared by every session; regenerated when the process
/// id changes (a forked child gets its own).
pub fn process_uuid() -> String {
    let pid = std::process::id();
    let mut slot = PROCESS_UUID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*slot {
        Some((owner, id)) if *owner == pid => id.clone(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            *slot = Some((pid, id.clone()));
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_uuid_is_stable_uuid4() {
        let a = process_uuid();
        assert_eq!(a, process_uuid());
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        #[cfg(target_os = "linux")]
        assert_eq!(platform_name(), "Linux");
    }
}
