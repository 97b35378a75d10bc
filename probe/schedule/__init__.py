"""Unattended runs: install, inspect and remove a schedule that runs `probe run --unattended`.

Two backends, a systemd user timer when the user's systemd instance answers, otherwise a crontab
entry. Both start at a random minute offset inside the period and bake in absolute paths, so the
scheduled run measures exactly what the volunteer tried by hand; output goes to a log file in the
user state directory.

    commands .... install / status / remove, the front `probe schedule` calls; Backend
    cadence ..... durations and the Cadence (period, offset, jitter) in both calendars
    job ......... the command a schedule runs and its environment
    systemd ..... the systemd user timer and service
    cron ........ the crontab block between marker lines
    log ......... the unattended log: its path, its size limit, its newest line
    tools ....... systemctl / crontab under a timeout; ScheduleError
"""
