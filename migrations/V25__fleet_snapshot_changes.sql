-- Fleet snapshots, smaller: most hold only the tasks whose latest upload changed
-- since the snapshot before (`since`, that snapshot's `upto`; NULL for a whole
-- fleet), and every one is deflated. At 100,000 tasks a whole fleet every 20,000
-- uploads took a third of the database. Snapshots are derived from the uploads
-- alone: the service makes them again in the background.
DROP TABLE fleet_snapshots;
CREATE TABLE fleet_snapshots (
    upto   INTEGER PRIMARY KEY,
    since  INTEGER,
    states BLOB    NOT NULL
);
