DROP TABLE "purged";
DROP TABLE "runs";
