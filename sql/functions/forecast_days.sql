-- forecast_days: how many stacks become eligible on each of the next p_days days if nothing
-- changes (no new activity, login or blocker), from today (the session's time zone), with
-- the running total. The `forecast` view is forecast_days(30). Stacks a blocker holds never
-- become eligible on their own and are not counted; nor are those eligible already.
-- Not SECURITY DEFINER: it reads the eligibility view with the caller's privileges.
-- PL/pgSQL, so the view it reads need not exist yet when it is created (views come after
-- functions in a deploy).
CREATE OR REPLACE FUNCTION {{ schema|ident }}."forecast_days"(p_days integer)
RETURNS TABLE ("day" date, "becoming_eligible" bigint, "cumulative" numeric)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_days > 3660 THEN
        RAISE EXCEPTION 'adhoc-gc: forecast_days needs a number of days from 1 to 3660, not %',
            coalesce(p_days::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The eligibility view once, bucketed by day, then joined to the days: a join on the
    -- time range made the planner read the view once per day (137 s for 30 days at 1M).
    RETURN QUERY
    WITH "upcoming" AS MATERIALIZED (
        SELECT date_trunc('day', "e"."eligible_at") AS "day", count(*) AS "stacks"
        FROM {{ schema|ident }}."eligibility" AS "e"
        WHERE NOT "e"."eligible"
          AND "e"."eligible_at" >= date_trunc('day', now())
          AND "e"."eligible_at" < date_trunc('day', now()) + p_days * interval '1 day'
        GROUP BY 1
    )
    SELECT
        "d"."day"::date,
        coalesce("u"."stacks", 0),
        sum(coalesce("u"."stacks", 0)) OVER (ORDER BY "d"."day")
    FROM generate_series(date_trunc('day', now()), date_trunc('day', now()) + (p_days - 1) * interval '1 day',
                         interval '1 day') AS "d"("day")
    LEFT JOIN "upcoming" AS "u" ON "u"."day" = "d"."day"
    ORDER BY "d"."day";
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."forecast_days"(integer) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."forecast_days"(integer) IS
    'adhoc-gc: for each of the next p_days days (1 to 3660, from today), how many stacks become eligible that day if nothing changes, and the running total; the forecast view is forecast_days(30).';
