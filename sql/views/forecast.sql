{# depends on: views/eligibility.sql #}
-- forecast: how many stacks become eligible on each of the next 30 days if nothing changes
-- (no new activity, login or blocker). Stacks a blocker holds never become eligible on
-- their own and are not counted.
CREATE OR REPLACE VIEW {{ schema|ident }}."forecast" AS
SELECT
    "d"."day"::date AS "day",
    count("e"."customer_id") AS "becoming_eligible",
    sum(count("e"."customer_id")) OVER (ORDER BY "d"."day") AS "cumulative"
FROM generate_series(date_trunc('day', now()), date_trunc('day', now()) + interval '29 days', interval '1 day')
     AS "d"("day")
LEFT JOIN {{ schema|ident }}."eligibility" AS "e"
    ON NOT "e"."eligible"
   AND "e"."eligible_at" >= "d"."day" AND "e"."eligible_at" < "d"."day" + interval '1 day'
GROUP BY "d"."day";

COMMENT ON VIEW {{ schema|ident }}."forecast" IS
    'adhoc-gc: for each of the next 30 days, how many stacks become eligible that day if nothing changes, and the running total.';
