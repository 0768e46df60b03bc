"""Moving bytes: HTTP downloads with deadlines and resume, the file a download writes, the taps one read feeds."""
