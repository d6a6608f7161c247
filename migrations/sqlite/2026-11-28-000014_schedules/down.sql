DROP TABLE schedule_occurrences;
DROP TABLE template_schedules;
