//! Bitrix's site checker, push test (`check_pull_stream`), against pushpull directly: the
//! checker's exact requests (tests/common/site_checker.rs) on the sub and pub listeners, with
//! the BitrixVM paths and the short ones. Behind nginx it runs in tests/nginx.rs.
//! spec/publishing.md §1 (a body that is not JSON), spec/text-format.md §3, spec/longpoll.md.

mod common;
#[path = "common/site_checker.rs"]
mod site_checker;

use common::{KEY, start};
use site_checker::Target;

#[test]
fn site_checker_push_test_passes() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    for (sub_path, pub_path) in [("/bitrix/sub/", "/bitrix/pub/"), ("/sub/", "/pub/")] {
        let target = Target {
            sub: srv.sub,
            sub_path,
            publ: srv.publ,
            pub_path,
        };
        site_checker::run(&target, |ch| srv.wait_subscribers(ch, 1));
    }
}
