// i18n.js — every string the web client shows, one table per language.
//
// Chinese (zh-CN) is the default; English is a toggle. No other module holds
// user-visible text: they call t('key', {params}). A key missing from a
// language falls back to zh-CN, then to the key itself, so a gap shows up as
// an obvious key rather than as an empty button.

export const LANGS = ['zh-CN', 'en'];

const zh = {
  'app.name': '村居通',
  'app.tagline': '村里的事，大家商量',
  'app.logo': '村',

  'settings.large_text': '大字',
  'settings.large_text.short': '大字',
  'settings.large_text.on': '大字：开',
  'settings.large_text.off': '大字：关',
  'settings.lang': 'English',
  'settings.lang.label': '切换到英文',
  'settings.logout': '退出登录',

  'login.title': '登录',
  'login.phone': '手机号',
  'login.phone.placeholder': '请输入 11 位手机号',
  'login.password': '密码',
  'login.password.placeholder': '请输入密码',
  'login.submit': '登录',
  'login.busy': '正在登录…',
  'login.failed': '手机号或密码不对，请再试一次。',
  'login.missing': '请填写手机号和密码。',
  'login.network': '连不上服务器，请检查网络后再试。',
  'login.server': '服务器暂时出了问题，请稍后再试。',
  'login.rate_limited': '尝试次数太多，请稍等一会儿再试。',
  'login.expired': '登录已过期，请重新登录。',
  'login.hint': '还没有账号？请联系本村（居）委会。',

  'conn.connecting': '正在连接…',
  'conn.connected': '已连接',
  'conn.reconnecting': '正在重连…',
  'conn.offline': '离线',
  'conn.offline.banner': '网络已断开。您写的消息会先保存，联网后自动发出。',

  'groups.title': '我的村居',
  'groups.empty': '您还没有加入任何村居群。请联系本村（居）委会。',
  'groups.loading': '正在载入…',
  'groups.unread': '{n} 条新消息',
  'groups.open': '进入',
  'kind.village': '村',
  'kind.neighbourhood': '居委',

  'role.member': '居民',
  'role.cadre': '干部',
  'role.secretary': '书记',
  'role.volunteer': '志愿者',
  'role.town_officer': '镇干部',
  'role.district_officer': '区干部',

  'nav.back': '返回',

  'channel.chat': '群聊',
  'channel.notices': '公告',
  'channel.requests': '诉求',
  'channel.deliberation': '议事厅',
  'channel.exchange': '置换',
  'channel.chat.long': '群聊',
  'channel.notices.long': '公告',
  'channel.requests.long': '诉求',
  'channel.deliberation.long': '议事厅',
  'channel.exchange.long': '公益置换',
  'channel.soon.title': '即将上线',
  'channel.soon.notices': '村（居）委的通知、村务公开和已读回执，很快就能在这里查看。',
  'channel.soon.requests': '有事找村（居）委：提交诉求、看处理进度和 15 小时回复时限，很快就能在这里办理。',
  'channel.soon.deliberation': '村里的公共事务：议题、讨论、投票和公约项目，很快就能在这里参与。',
  'channel.soon.exchange': '闲置物品的公益置换：发布、认领、交接，很快就能在这里进行。',
  'channel.soon.meanwhile': '现在可以先在「群聊」里说。',

  'chat.empty': '还没有消息。说点什么吧！',
  'chat.load_older': '查看更早的消息',
  'chat.loading_older': '正在载入…',
  'chat.no_older': '没有更早的消息了',
  'chat.placeholder': '说点什么…',
  'chat.send': '发送',
  'chat.reply_to': '回复 {name}：',
  'chat.reply_cancel': '取消回复',
  'chat.quote_author': '{name}：',
  'chat.quote_missing': '原消息（#{seq}）',
  'chat.quote_loading': '正在载入原消息…',
  'chat.pending': '等待发送',
  'chat.sending': '发送中…',
  'chat.failed': '没有发出：{reason}',
  'chat.failed.dismiss': '点此删除',
  'chat.me': '我',
  'chat.too_long': '消息太长了（最多 {max} 个字）。',
  'chat.new_below': '有新消息 ↓',
  'chat.tap_to_reply': '点一下消息可以回复',
  'chat.count': '{n}/{max}',

  'time.yesterday': '昨天 {time}',

  'error.bad_request': '请求有误，请刷新页面后再试。',
  'error.unknown_op': '网页版本太旧，请刷新页面。',
  'error.unauthorized': '登录已过期，请重新登录。',
  'error.forbidden': '您没有权限这样做。',
  'error.not_found': '找不到这个群，或者您不是这个群的成员。',
  'error.too_large': '内容太长了，请删短一些。',
  'error.rate_limited': '操作太快了，请稍等一秒。',
  'error.conflict': '操作冲突，请刷新页面。',
  'error.unavailable': '服务器正在维护，消息会自动重发。',
  'error.internal': '服务器出了点问题，稍后会自动重试。',
  'error.unknown': '出了点问题：{message}',
  'error.close.1009': '消息太大，连接被断开，正在重连。',
  'error.close.4008': '网络太慢，正在重新同步。',
  'error.close.4029': '操作太频繁，稍后自动重连。',
  'error.close.4001': '登录验证超时，正在重连。',
  'error.close.4003': '已退出登录或密码已修改，请重新登录。',
};

const en = {
  'app.name': 'VillageHub',
  'app.tagline': 'Village matters, decided together',
  'app.logo': '村',

  'settings.large_text': 'Large text',
  'settings.large_text.short': 'A+',
  'settings.large_text.on': 'Large text: on',
  'settings.large_text.off': 'Large text: off',
  'settings.lang': '中文',
  'settings.lang.label': 'Switch to Chinese',
  'settings.logout': 'Log out',

  'login.title': 'Log in',
  'login.phone': 'Phone number',
  'login.phone.placeholder': '11-digit phone number',
  'login.password': 'Password',
  'login.password.placeholder': 'Your password',
  'login.submit': 'Log in',
  'login.busy': 'Logging in…',
  'login.failed': 'Wrong phone number or password. Please try again.',
  'login.missing': 'Please enter your phone number and password.',
  'login.network': 'Cannot reach the server. Check your network and try again.',
  'login.server': 'The server has a problem. Please try again later.',
  'login.rate_limited': 'Too many attempts. Please wait a moment.',
  'login.expired': 'Your login has expired. Please log in again.',
  'login.hint': 'No account yet? Ask your village or neighbourhood committee.',

  'conn.connecting': 'Connecting…',
  'conn.connected': 'Connected',
  'conn.reconnecting': 'Reconnecting…',
  'conn.offline': 'Offline',
  'conn.offline.banner': 'You are offline. Your messages are kept and sent when you are back online.',

  'groups.title': 'My groups',
  'groups.empty': 'You are not in any group yet. Ask your village or neighbourhood committee.',
  'groups.loading': 'Loading…',
  'groups.unread': '{n} new',
  'groups.open': 'Open',
  'kind.village': 'Village',
  'kind.neighbourhood': 'Neighbourhood',

  'role.member': 'Resident',
  'role.cadre': 'Cadre',
  'role.secretary': 'Secretary',
  'role.volunteer': 'Volunteer',
  'role.town_officer': 'Town officer',
  'role.district_officer': 'District officer',

  'nav.back': 'Back',

  'channel.chat': 'Chat',
  'channel.notices': 'Notices',
  'channel.requests': 'Requests',
  'channel.deliberation': 'Topics',
  'channel.exchange': 'Swap',
  'channel.chat.long': 'Chat',
  'channel.notices.long': 'Notices',
  'channel.requests.long': 'Requests',
  'channel.deliberation.long': 'Deliberation',
  'channel.exchange.long': 'Charity exchange',
  'channel.soon.title': 'Coming soon',
  'channel.soon.notices': 'Committee notices, public affairs disclosures and read receipts will be here soon.',
  'channel.soon.requests': 'File a request with the committee, follow it and its 15-hour response clock — soon, here.',
  'channel.soon.deliberation': 'Public topics, discussion, votes, conventions and projects — soon, here.',
  'channel.soon.exchange': 'Offer, want and claim items for charity — soon, here.',
  'channel.soon.meanwhile': 'Meanwhile, talk in Chat.',

  'chat.empty': 'No messages yet. Say something!',
  'chat.load_older': 'Show older messages',
  'chat.loading_older': 'Loading…',
  'chat.no_older': 'No older messages',
  'chat.placeholder': 'Say something…',
  'chat.send': 'Send',
  'chat.reply_to': 'Reply to {name}:',
  'chat.reply_cancel': 'Cancel reply',
  'chat.quote_author': '{name}: ',
  'chat.quote_missing': 'Original message (#{seq})',
  'chat.quote_loading': 'Loading the original message…',
  'chat.pending': 'Waiting to send',
  'chat.sending': 'Sending…',
  'chat.failed': 'Not sent: {reason}',
  'chat.failed.dismiss': 'Tap to remove',
  'chat.me': 'Me',
  'chat.too_long': 'The message is too long (at most {max} characters).',
  'chat.new_below': 'New messages ↓',
  'chat.tap_to_reply': 'Tap a message to reply',
  'chat.count': '{n}/{max}',

  'time.yesterday': 'Yesterday {time}',

  'error.bad_request': 'The request was not understood. Please reload the page.',
  'error.unknown_op': 'This page is out of date. Please reload it.',
  'error.unauthorized': 'Your login has expired. Please log in again.',
  'error.forbidden': 'You are not allowed to do that.',
  'error.not_found': 'This group does not exist or you are not a member.',
  'error.too_large': 'That is too long. Please shorten it.',
  'error.rate_limited': 'Too fast. Please wait a second.',
  'error.conflict': 'That conflicts with the current state. Please reload.',
  'error.unavailable': 'The server is under maintenance; your message will be resent.',
  'error.internal': 'The server had a problem; it will be retried.',
  'error.unknown': 'Something went wrong: {message}',
  'error.close.1009': 'A message was too big; reconnecting.',
  'error.close.4008': 'The network is too slow; resynchronising.',
  'error.close.4029': 'Too many actions; reconnecting shortly.',
  'error.close.4001': 'Login check timed out; reconnecting.',
  'error.close.4003': 'You were logged out or your password changed; please log in again.',
};

const TABLES = { 'zh-CN': zh, en };

let current = 'zh-CN';

export function setLang(lang) {
  current = LANGS.includes(lang) ? lang : 'zh-CN';
  document.documentElement.lang = current;
}

export function getLang() {
  return current;
}

/** Looks up `key` in the current language and fills `{name}` placeholders. */
export function t(key, params) {
  const s = TABLES[current][key] ?? zh[key] ?? key;
  if (!params) return s;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
}

/** Every key of every table, for the test that checks both are complete. */
export function tables() {
  return TABLES;
}
