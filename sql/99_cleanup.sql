--
-- 99_cleanup: the suite leaves no role behind (pg_regress drops its own
-- database), so that make installcheck can run again against the same
-- server.  DROP OWNED also drops the roles' jobs.
--
SELECT wait_idle();
DROP OWNED BY regress_cb_owner, regress_cb_nologin, regress_cb_other,
    regress_cb_member, regress_cb_monitor;
DROP ROLE regress_cb_owner, regress_cb_nologin, regress_cb_other,
    regress_cb_member, regress_cb_monitor;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname LIKE 'regress\_cb\_%';
