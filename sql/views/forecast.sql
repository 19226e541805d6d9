{# depends on: views/eligibility.sql #}
-- forecast: how many stacks become eligible on each of the next 30 days if nothing changes
-- (no new activity, login or blocker). Stacks a blocker holds never become eligible on
-- their own and are not counted. Another horizon: forecast_days(N), which this view calls.
CREATE OR REPLACE VIEW {{ schema|ident }}."forecast" AS
SELECT "f"."day", "f"."becoming_eligible", "f"."cumulative"
FROM {{ schema|ident }}."forecast_days"(30) AS "f";

COMMENT ON VIEW {{ schema|ident }}."forecast" IS
    'adhoc-gc: for each of the next 30 days, how many stacks become eligible that day if nothing changes, and the running total (forecast_days(30); forecast_days(N) for another horizon).';
