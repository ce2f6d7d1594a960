"""Assurance: alarms (TMF642), trouble tickets (TMF621) and detection runs."""
