{# depends on: views/eligibility.sql #}
-- blocked_summary: how many ad-hoc customers each rule or blocker holds, and how many are
-- eligible now. A customer held for two reasons counts under both, so the percentages
-- (of all ad-hoc customers) can add up to more than 100.
CREATE OR REPLACE VIEW {{ schema|ident }}."blocked_summary" AS
WITH "verdicts" AS MATERIALIZED (
    SELECT "e"."eligible", "e"."blocked_by" FROM {{ schema|ident }}."eligibility" AS "e"
)
SELECT "reason", count(*) AS "customers",
       round(100.0 * count(*) / nullif((SELECT count(*) FROM "verdicts"), 0), 1) AS "percent_of_adhoc"
FROM (
    SELECT 'eligible now' AS "reason" FROM "verdicts" WHERE "eligible"
    UNION ALL
    SELECT "held"."reason" FROM "verdicts", unnest("verdicts"."blocked_by") AS "held"("reason")
) AS "reasons"
GROUP BY "reason";

COMMENT ON VIEW {{ schema|ident }}."blocked_summary" IS
    'adhoc-gc: per reason (eligible now, activity, login, or a blocker name), how many ad-hoc customers it holds and their percentage of all ad-hoc customers.';
