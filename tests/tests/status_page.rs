//! The read-only status page on the metrics listener (`/`), loaded in headless Chromium against a lab
//! flowpin: the page (served whole by flowpin, no external asset) renders one row per uplink with its
//! state, refreshes in place, and shows the change when an uplink is black-holed. A screenshot of
//! each load is taken (kept in the lab directory while the test runs).

use std::time::Duration;

use flowpin_lab::{Fault, Lab, LabSpec, RouterKind};
use flowpin_tests::{
    append_config_and_reload, down_and_assert_clean, health_section, lab_up, uplink_state,
    wait_for_probes_answered, wait_for_status,
};

/// The page after Chromium ran its scripts for `budget_ms` of virtual time, and its screenshot.
fn load_page(lab: &Lab, shot: &str, budget_ms: u32) -> (String, Vec<u8>) {
    let dir = lab.dir();
    let profile = dir.join("chromium-profile");
    let png = dir.join(shot);
    let common = |extra: &[String]| -> Vec<String> {
        let mut argv = vec![
            "chromium".to_owned(),
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--virtual-time-budget={budget_ms}"),
            "--window-size=1280,900".to_owned(),
        ];
        argv.extend_from_slice(extra);
        argv.push("http://127.0.0.1:9469/".to_owned());
        argv
    };
    let run = |argv: Vec<String>| -> String {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        lab.exec_ok(&lab.router().ns, &argv)
            .unwrap_or_else(|e| panic!("chromium: {e:#}"))
    };
    let dom = run(common(&["--dump-dom".to_owned()]));
    run(common(&[format!("--screenshot={}", png.display())]));
    let image = std::fs::read(&png).expect("the screenshot");
    (dom, image)
}

/// The `data-state` of the uplink row named `name` in `dom` (`None`: no such row).
fn row_state(dom: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("data-name=\"{name}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    assert!(tag.starts_with("<tr class=\"uplink\""), "{tag}");
    let state = tag.split("data-state=\"").nth(1)?;
    Some(state[..state.find('"')?].to_owned())
}

/// How many times the page re-rendered (`data-refreshed` on its body).
fn refreshes(dom: &str) -> u32 {
    dom.split("data-refreshed=\"")
        .nth(1)
        .and_then(|rest| rest[..rest.find('"')?].parse().ok())
        .unwrap_or(0)
}

fn assert_png(image: &[u8]) {
    assert!(
        image.len() > 5_000 && image.starts_with(b"\x89PNG\r\n\x1a\n"),
        "a PNG screenshot of the page ({} bytes)",
        image.len()
    );
}

#[test]
fn the_status_page_shows_the_uplinks_and_an_uplink_going_down() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    append_config_and_reload(&lab, &health_section(300, 3, 3, 5));
    wait_for_probes_answered(&lab);
    for uplink in 0..lab.uplinks().len() {
        lab.inject_fault(uplink, Fault::None)
            .expect("installing the fault counters");
    }

    let (dom, image) = load_page(&lab, "up.png", 3_500);
    assert_png(&image);
    assert_eq!(row_state(&dom, "isp1").as_deref(), Some("up"), "{dom}");
    assert_eq!(row_state(&dom, "isp2").as_deref(), Some("up"), "{dom}");
    assert!(refreshes(&dom) >= 2, "refreshed in place: {dom}");
    assert!(dom.contains("top flows on isp1"), "{dom}");
    assert!(
        dom.contains("<div id=\"error\"></div>"),
        "every refresh reached flowpin: {dom}"
    );

    lab.inject_fault(1, Fault::Blackhole)
        .expect("black-holing isp2");
    wait_for_status(&lab, Duration::from_secs(10), |s| {
        uplink_state(s, 1) == "down"
    })
    .unwrap_or_else(|s| panic!("isp2 never went down: {s:#}"));
    let (dom, image) = load_page(&lab, "isp2-down.png", 1_500);
    assert_png(&image);
    assert_eq!(row_state(&dom, "isp1").as_deref(), Some("up"), "{dom}");
    assert_eq!(row_state(&dom, "isp2").as_deref(), Some("down"), "{dom}");
    lab.inject_fault(1, Fault::None)
        .expect("lifting the black hole");
    down_and_assert_clean(lab);
}
