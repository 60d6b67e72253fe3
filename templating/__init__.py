"""Templating: MJML compiled once, Jinja2 per contact, tracked links, MIME, SMS measure.

Entry points: ``templating.email.EmailTemplate`` (load / check / render),
``templating.sms.SmsTemplate`` and ``templating.sms.measure``,
``templating.mjml.compile_mjml``, ``templating.errors.TemplateError``.
"""
