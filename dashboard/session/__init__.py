"""The app's session: sign-in and page access, the selected patient, and the audit hooks that
write what a user was shown.
"""
