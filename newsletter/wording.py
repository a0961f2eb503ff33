"""The fixed words of the email and the web pages, per language.

Templates receive the table for the issue's language as `t`; an editor's own template may
of course write its words directly.  Languages fall back by prefix (`zh-TW` -> `zh`), then
to English.
"""

from __future__ import annotations

from typing import Mapping

WORDING: dict[str, dict[str, str]] = {
    "zh": {
        "overview": "本期概览",
        "colon": "：",
        "entries_count": "共 {count} 篇",
        "sources": "来源",
        "insight": "核心洞察",
        "summary": "内容简介",
        "related": "其他相关资讯",
        "view_in_browser": "在浏览器中查看",
        "unsubscribe": "退订",
        "reason": "你收到这封邮件，是因为你订阅了「{name}」。",
        "archive": "往期",
        "issue_of": "{date}",
        "date_format": "{year}年{month:02d}月{day:02d}日",
        "feed": "订阅源",
        "no_issues": "还没有发出的期刊。",
        "unsubscribe_title": "退订「{name}」",
        "unsubscribe_ask": "确定不再接收「{name}」吗？地址：{email}",
        "unsubscribe_button": "确认退订",
        "unsubscribed_title": "已退订",
        "unsubscribed_body": "{email} 不会再收到「{name}」。",
        "resubscribe_button": "我点错了，重新订阅",
        "resubscribed_title": "已重新订阅",
        "resubscribed_body": "{email} 会继续收到「{name}」。",
        "invalid_link_title": "链接无效",
        "invalid_link_body": "这个链接无效或已经过期。",
        "subscribe_title": "订阅「{name}」",
        "subscribe_email": "邮箱地址",
        "subscribe_name": "称呼（可选）",
        "subscribe_button": "订阅",
        "subscribe_sent_title": "请查收确认邮件",
        "subscribe_sent_body": "如果这个地址可以订阅，我们已经发去一封确认邮件。点击其中的链接即可完成订阅。",
        "subscribe_invalid": "这个邮箱地址无效：{reason}",
        "too_many_requests": "请求太频繁，请稍后再试。",
        "confirm_subject": "请确认订阅「{name}」",
        "confirm_body": "你好{name}，\n\n请点击下面的链接确认订阅「{newsletter}」：\n\n{url}\n\n如果不是你本人操作，忽略这封邮件即可，我们不会再打扰你。\n",
        "confirmed_title": "订阅成功",
        "confirmed_body": "{email} 已订阅「{name}」。",
        "not_found_title": "找不到页面",
        "stats_title": "统计：{title}",
    },
    "en": {
        "overview": "In this issue",
        "colon": ": ",
        "entries_count": "{count} stories",
        "sources": "Sources",
        "insight": "Key insight",
        "summary": "Summary",
        "related": "Other news",
        "view_in_browser": "View in browser",
        "unsubscribe": "Unsubscribe",
        "reason": "You receive this email because you subscribed to {name}.",
        "archive": "Archive",
        "issue_of": "{date}",
        "date_format": "{year}-{month:02d}-{day:02d}",
        "feed": "Feed",
        "no_issues": "No issues have been sent yet.",
        "unsubscribe_title": "Unsubscribe from {name}",
        "unsubscribe_ask": "Stop sending {name} to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "Unsubscribed",
        "unsubscribed_body": "{email} will no longer receive {name}.",
        "resubscribe_button": "That was a mistake, resubscribe",
        "resubscribed_title": "Subscribed again",
        "resubscribed_body": "{email} will keep receiving {name}.",
        "invalid_link_title": "Invalid link",
        "invalid_link_body": "This link is invalid or has expired.",
        "subscribe_title": "Subscribe to {name}",
        "subscribe_email": "Email address",
        "subscribe_name": "Name (optional)",
        "subscribe_button": "Subscribe",
        "subscribe_sent_title": "Check your inbox",
        "subscribe_sent_body": "If this address can subscribe, we have sent it a confirmation email. Click the link in it to finish.",
        "subscribe_invalid": "This email address is not valid: {reason}",
        "too_many_requests": "Too many requests; please try again later.",
        "confirm_subject": "Confirm your subscription to {name}",
        "confirm_body": "Hello{name},\n\nPlease confirm your subscription to {newsletter} by opening this link:\n\n{url}\n\nIf this wasn't you, ignore this email and you will hear nothing more from us.\n",
        "confirmed_title": "Subscribed",
        "confirmed_body": "{email} is now subscribed to {name}.",
        "not_found_title": "Page not found",
        "stats_title": "Stats: {title}",
    },
}


def wording_for(language: str) -> Mapping[str, str]:
    """The words for a BCP 47 language tag, falling back by prefix, then to English."""
    tag = (language or "").lower()
    return WORDING.get(tag) or WORDING.get(tag.split("-")[0]) or WORDING["en"]


def format_date(date, language: str) -> str:
    return wording_for(language)["date_format"].format(year=date.year, month=date.month, day=date.day)
