"""Unattended runs: install, inspect and remove a schedule that runs `probe run --unattended`.

Two backends, a systemd user timer when the user's systemd instance answers, otherwise a crontab
entry. Both start at a random minute offset inside the period and bake in absolute paths: the
config and database the volunteer named at install time (--config, --db; never a config.toml that
merely lay in the directory install ran from), the XDG directories, the interpreter. Without
--config the scheduled run reads the user config dir's config.toml, or the built-in defaults.
Output goes to a log file in the user state directory. An install that fails part way
(daemon-reload refused, crontab refused) leaves no schedule behind.

    commands .... install / status / remove, the front `probe schedule` calls; Backend
    cadence ..... durations and the Cadence (period, offset, jitter) in both calendars
    job ......... the command a schedule runs and its environment
    systemd ..... the systemd user timer and service
    cron ........ the crontab block between marker lines
    log ......... the unattended log: its path, its size limit, its newest line
    tools ....... systemctl / crontab under a timeout; ScheduleError
"""
