// The tickwatch dashboard: one page over the HTTP API and its live stream, nothing else.
// Signing in makes a session cookie (HttpOnly: this script never sees a key or a token it
// could leak); every request below rides on it. Sections: words (ko/en), formats (the
// user's time zone, the market's prices), the API, the chart (history, live candles, signal
// markers, alert lines that can be dragged), the panels, the stream, and start-up.
'use strict';
(() => {
  const LC = window.LightweightCharts;
  const $ = (id) => document.getElementById(id);

  // ---- words -------------------------------------------------------------------------
  const WORDS = {
    en: {
      search_placeholder: 'Search: 삼성전자, Samsung, BTC…', sign_in: 'Sign in', sign_out: 'Sign out',
      sign_in_link_hint: 'Send /web to the tickwatch bot for a one-time sign-in link, or paste an API key (/apikey).',
      api_key: 'API key', offline: 'offline', live: 'live', reconnecting: 'reconnecting…',
      no_candles: 'No candles recorded for this symbol and interval yet.',
      drag_hint: 'Drag an alert line to move its level; you confirm before it is saved.',
      my_alerts: 'My alerts', symbol: 'Symbol', condition: 'Condition', threshold: 'Level', low: 'Low', high: 'High',
      pct: 'Move %', window_s: 'Window (s)', expression: 'Expression', trigger: 'Trigger', bar_interval: 'Bar',
      cooldown_s: 'Cooldown (s)', expires: 'Expires', template: 'Message (optional)', create_alert: 'Create alert',
      save_alert: 'Save alert', cancel: 'Cancel', level: 'Level', state: 'State', no_alerts: 'No alerts yet.',
      activity: 'Activity', alert_events: 'Alert events', no_events: 'No alert fired yet.',
      notifications: 'Notifications', no_notifications: 'No notifications yet.', signals: 'Signals',
      kind: 'Kind', count: 'Count', hit_1: 'Hit +1', hit_5: 'Hit +5', hit_20: 'Hit +20', mean_5: 'Mean +5',
      time: 'Time', grade: 'Grade', price: 'Price', no_signals: 'No signals for this symbol yet.',
      paper: 'Paper trading', strategy: 'Strategy', equity: 'Equity', return: 'Return', trades: 'Trades',
      win_rate: 'Win rate', open_positions: 'Open', no_paper: 'No paper strategies (the bot: /paper new).',
      positions: 'Open positions', quantity: 'Quantity', entry: 'Entry', mark: 'Mark', pnl: 'Unrealised P&L',
      no_positions: 'No open positions.',
      save: 'Save', active: 'active', paused: 'paused', edit: 'Edit', pause: 'Pause', resume: 'Resume',
      delete: 'Delete', events: 'Events', confirm_move: 'Move alert #{id} ({field}) from {from} to {to}?',
      confirm_delete: 'Delete alert #{id}?', alert_created: 'Alert #{id} created', alert_saved: 'Alert #{id} saved',
      alert_deleted: 'Alert #{id} deleted', alert_fired: '🔔 {symbol} {condition} {threshold} — {price}',
      link_failed: 'That sign-in link is used up or expired: send /web to the bot for a new one.',
      pick_symbol: 'Pick a symbol first.', grade_of: 'grade {grade}, score {score}',
      switch_account: 'You are signed in as {name}. Sign in with this link instead (it may be another account)?',
      cond_greater_than: 'above', cond_less_than: 'below', cond_crossing: 'crossing', cond_crossing_up: 'crossing up',
      cond_crossing_down: 'crossing down', cond_entering_channel: 'entering channel',
      cond_exiting_channel: 'exiting channel', cond_inside_channel: 'inside channel',
      cond_outside_channel: 'outside channel', cond_moving_up: 'moving up', cond_moving_down: 'moving down',
      cond_moving_up_pct: 'moving up %', cond_moving_down_pct: 'moving down %', cond_expression: 'expression',
      trig_once: 'once', trig_once_per_bar: 'once per bar', trig_once_per_bar_close: 'once per bar close',
      trig_every_time: 'every time',
    },
    ko: {
      search_placeholder: '종목 검색: 삼성전자, 005930, BTC…', sign_in: '로그인', sign_out: '로그아웃',
      sign_in_link_hint: 'tickwatch 봇에 /web 을 보내 일회용 로그인 링크를 받거나, API 키(/apikey)를 붙여 넣으세요.',
      api_key: 'API 키', offline: '연결 끊김', live: '실시간', reconnecting: '다시 연결 중…',
      no_candles: '이 종목과 주기의 캔들이 아직 없습니다.',
      drag_hint: '알림 선을 끌어 가격을 옮길 수 있습니다. 저장 전에 확인합니다.',
      my_alerts: '내 알림', symbol: '종목', condition: '조건', threshold: '가격', low: '하단', high: '상단',
      pct: '변동 %', window_s: '기간(초)', expression: '수식', trigger: '발동', bar_interval: '봉',
      cooldown_s: '재알림 간격(초)', expires: '만료', template: '메시지 (선택)', create_alert: '알림 만들기',
      save_alert: '알림 저장', cancel: '취소', level: '가격', state: '상태', no_alerts: '알림이 없습니다.',
      activity: '활동', alert_events: '알림 발생', no_events: '아직 발생한 알림이 없습니다.',
      notifications: '보낸 메시지', no_notifications: '보낸 메시지가 없습니다.', signals: '시그널',
      kind: '종류', count: '건수', hit_1: '적중 +1', hit_5: '적중 +5', hit_20: '적중 +20', mean_5: '평균 +5',
      time: '시각', grade: '등급', price: '가격', no_signals: '이 종목의 시그널이 아직 없습니다.',
      paper: '모의매매', strategy: '전략', equity: '평가금액', return: '수익률', trades: '거래',
      win_rate: '승률', open_positions: '보유', no_paper: '모의매매 전략이 없습니다 (봇: /paper new).',
      positions: '보유 종목', quantity: '수량', entry: '매수가', mark: '현재가', pnl: '평가손익',
      no_positions: '보유 종목이 없습니다.',
      save: '저장', active: '활성', paused: '일시정지', edit: '수정', pause: '정지', resume: '재개',
      delete: '삭제', events: '내역', confirm_move: '알림 #{id}({field})을(를) {from}에서 {to}(으)로 옮길까요?',
      confirm_delete: '알림 #{id}을(를) 삭제할까요?', alert_created: '알림 #{id}을(를) 만들었습니다',
      alert_saved: '알림 #{id}을(를) 저장했습니다', alert_deleted: '알림 #{id}을(를) 삭제했습니다',
      alert_fired: '🔔 {symbol} {condition} {threshold} — {price}',
      link_failed: '로그인 링크가 이미 쓰였거나 만료되었습니다. 봇에 /web 을 다시 보내세요.',
      pick_symbol: '먼저 종목을 고르세요.', grade_of: '{grade}등급, 점수 {score}',
      switch_account: '{name}(으)로 로그인되어 있습니다. 이 링크로 다시 로그인할까요 (다른 계정일 수 있습니다)?',
      cond_greater_than: '이상', cond_less_than: '이하', cond_crossing: '교차', cond_crossing_up: '상향 돌파',
      cond_crossing_down: '하향 돌파', cond_entering_channel: '채널 진입', cond_exiting_channel: '채널 이탈',
      cond_inside_channel: '채널 안', cond_outside_channel: '채널 밖', cond_moving_up: '상승폭',
      cond_moving_down: '하락폭', cond_moving_up_pct: '상승률', cond_moving_down_pct: '하락률',
      cond_expression: '수식', trig_once: '한 번', trig_once_per_bar: '봉마다 한 번',
      trig_once_per_bar_close: '봉 마감마다 한 번', trig_every_time: '매번',
      kind_rsi_oversold: 'RSI 과매도', kind_rsi_overbought: 'RSI 과매수', kind_macd_bullish_cross: 'MACD 골든',
      kind_macd_bearish_cross: 'MACD 데드', kind_golden_cross: '골든크로스', kind_death_cross: '데드크로스',
      kind_bb_breakout_up: '볼린저 상단 돌파', kind_bb_breakout_down: '볼린저 하단 이탈', kind_bb_squeeze: '볼린저 수축',
      kind_volume_surge: '거래량 급증', kind_new_52w_high: '52주 신고가', kind_vcp_setup: 'VCP 셋업',
      kind_vcp_breakout: 'VCP 돌파', kind_closing_price_setup: '종가 베팅', kind_gap_up: '갭 상승',
      kind_orb_breakout: '시초 범위 돌파', kind_vwap_reclaim: 'VWAP 회복',
    },
  };
  // A marker's label: short, so a busy chart stays readable (the whole kind and its grade
  // show on hover).
  const SHORT = {
    rsi_oversold: 'RSI', rsi_overbought: 'RSI', macd_bullish_cross: 'MACD', macd_bearish_cross: 'MACD',
    golden_cross: 'GC', death_cross: 'DC', bb_breakout_up: 'BB', bb_breakout_down: 'BB', bb_squeeze: 'SQZ',
    volume_surge: 'VOL', new_52w_high: '52W', vcp_setup: 'VCP', vcp_breakout: 'VCP', closing_price_setup: 'CP',
    gap_up: 'GAP', orb_breakout: 'ORB', vwap_reclaim: 'VWAP',
  };
  const BEARISH = new Set(['rsi_overbought', 'macd_bearish_cross', 'death_cross', 'bb_breakout_down']);
  const LEVEL_CONDITIONS = new Set(['greater_than', 'less_than', 'crossing', 'crossing_up', 'crossing_down']);
  const CHANNEL_CONDITIONS = new Set(['entering_channel', 'exiting_channel', 'inside_channel', 'outside_channel']);

  const S = {
    lang: localStorage.getItem('tw.lang'),
    me: null,
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC',
    sym: null, // the SymbolInfo on the chart
    interval: localStorage.getItem('tw.interval') || '1d',
    bars: [], // the chart's bars, oldest first: {open_ts, open, high, low, close, volume}
    base: new Map(), // open_ts → the bar as recorded or published (what ticks are merged into)
    signals: [], // the chart's signals
    alerts: [],
    lines: new Map(), // `${alertId}:${field}` → {line, alert, field, price}
    events: [],
    precision: 2,
  };

  const t = (key, vars) => {
    const words = WORDS[S.lang] || WORDS.en;
    let text = words[key] ?? WORDS.en[key] ?? key;
    for (const [k, v] of Object.entries(vars || {})) text = text.replaceAll(`{${k}}`, v);
    return text;
  };
  const kindLabel = (kind) => (S.lang === 'ko' && WORDS.ko[`kind_${kind}`]) || kind.replaceAll('_', ' ');
  const condLabel = (c) => t(`cond_${c}`);

  function applyWords() {
    document.documentElement.lang = S.lang;
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const o of $('af-condition').options) o.textContent = condLabel(o.value);
    for (const o of $('af-trigger').options) o.textContent = t(`trig_${o.value}`);
    $('lang').textContent = S.lang === 'ko' ? 'English' : '한국어';
    $('af-submit').textContent = $('af-id').value ? t('save_alert') : t('create_alert');
  }

  // ---- formats -----------------------------------------------------------------------
  const daily = () => S.interval === '1d' || S.interval === '1w';
  let zoneParts = null;
  function zoneOffset(ms) {
    // How far the user's zone is ahead of UTC at `ms`: the chart draws times as UTC, so
    // bars are shifted by it to read in the user's zone.
    if (!zoneParts || zoneParts.tz !== S.tz) {
      zoneParts = { tz: S.tz, fmt: new Intl.DateTimeFormat('en-US', {
        timeZone: S.tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
        hour: '2-digit', minute: '2-digit', second: '2-digit' }) };
    }
    const p = {};
    for (const part of zoneParts.fmt.formatToParts(new Date(ms))) p[part.type] = part.value;
    const local = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second);
    return local - (ms - (((ms % 1000) + 1000) % 1000));
  }
  // Daily and weekly bars are the venue's days (a KRX day is a Seoul day): dated by the
  // venue's offset; shorter bars read in the user's zone.
  const venueOffset = (sym) => (sym && ['krx', 'kospi', 'kosdaq'].includes(sym.venue) ? 9 * 3600e3 : 0);
  const chartTime = (ms) => Math.floor((ms + (daily() ? venueOffset(S.sym) : zoneOffset(ms))) / 1000);
  const fmtTime = (ms) => new Intl.DateTimeFormat(S.lang === 'ko' ? 'ko-KR' : 'en-GB', {
    timeZone: S.tz, dateStyle: 'short', timeStyle: 'short' }).format(new Date(ms));
  const isKrw = (sym) => !!sym && (['krx', 'kospi', 'kosdaq'].includes(sym.venue) || String(sym.symbol).startsWith('KRW-'));
  function fmtPrice(value, sym = S.sym) {
    // In the format of the market of `sym` (anything with `venue` and `symbol`).
    const p = Number(value);
    if (!Number.isFinite(p)) return String(value);
    const krw = isKrw(sym);
    const max = krw ? (p >= 100 ? 0 : 4) : (p >= 1000 ? 2 : p >= 1 ? 4 : 8);
    const min = krw ? 0 : Math.min(2, max);
    return new Intl.NumberFormat(S.lang === 'ko' ? 'ko-KR' : 'en-US',
      { maximumFractionDigits: max, minimumFractionDigits: min }).format(p);
  }
  const fmtPct = (fraction) => fraction == null ? '–' : `${(fraction * 100).toFixed(2)}%`;
  const signClass = (x) => (x > 0 ? 'up' : x < 0 ? 'down' : '');
  const plain = (html) => {
    // Telegram HTML → text, without ever parsing it as this page's HTML.
    const text = String(html).replace(/<[^>]*>/g, '');
    return text.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&amp;', '&');
  };
  function decimalText(n) {
    // A positive decimal string the API takes: the chart's precision, no trailing zeros.
    let text = Number(n).toFixed(Math.min(12, S.precision));
    if (text.includes('.')) text = text.replace(/0+$/, '').replace(/\.$/, '');
    return text;
  }
  const userDecimal = (text) => text.trim().replaceAll(',', '');

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ''));
    return node;
  }

  let toastTimer = null;
  function toast(text) {
    const box = $('toast');
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 4000);
  }

  function confirmBox(text) {
    return new Promise((resolve) => {
      $('confirm-text').textContent = text;
      $('confirm').hidden = false;
      const done = (answer) => {
        $('confirm').hidden = true;
        $('confirm-yes').onclick = null;
        $('confirm-no').onclick = null;
        resolve(answer);
      };
      $('confirm-yes').onclick = () => done(true);
      $('confirm-no').onclick = () => done(false);
    });
  }

  // ---- the API -----------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }
  let busy = 0;
  const setBusy = (delta) => { busy += delta; document.body.dataset.busy = String(busy); };
  async function api(method, path, body) {
    setBusy(1);
    try {
      return await request(method, path, body);
    } finally {
      setBusy(-1);
    }
  }
  async function request(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      if (res.status === 401 && S.me) showSignIn();
      throw new ApiError(res.status, (data && (data.detail || data.title)) || res.statusText);
    }
    return data;
  }
  const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v != null)).toString();

  // ---- signing in --------------------------------------------------------------------
  function showSignIn(message) {
    S.me = null;
    closeStream();
    $('dash').hidden = true;
    $('search-box').hidden = true;
    $('signout').hidden = true;
    $('who').textContent = '';
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
  }

  async function signedIn(user) {
    S.me = user;
    if (!localStorage.getItem('tw.lang')) S.lang = user.language === 'ko' ? 'ko' : 'en';
    S.tz = user.time_zone || S.tz;
    applyWords();
    $('signin').hidden = true;
    $('dash').hidden = false;
    $('search-box').hidden = false;
    $('signout').hidden = false;
    $('who').textContent = user.name;
    makeChart();
    await loadAlerts();
    await chooseFirstSymbol();
    openStream();
    loadNotifications();
    loadPaper();
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const out = await api('POST', '/v1/session', { api_key: $('signin-key').value.trim() });
      $('signin-key').value = '';
      await signedIn(out.user);
    } catch (err) {
      $('signin-error').textContent = err.message;
    }
  });

  $('signout').addEventListener('click', async () => {
    await api('DELETE', '/v1/session').catch(() => null);
    showSignIn();
  });

  $('lang').addEventListener('click', () => {
    S.lang = S.lang === 'ko' ? 'en' : 'ko';
    localStorage.setItem('tw.lang', S.lang);
    applyWords();
    if (S.me) {
      makeChart();
      if (S.sym) loadSymbol(S.sym);
      renderAlerts();
      loadNotifications();
      loadPaper();
    }
  });

  // ---- symbol search -----------------------------------------------------------------
  let searchTimer = null;
  let searchSeq = 0;
  const results = $('search-results');
  const displayName = (info) => {
    const names = [info.name, ...(info.aliases || [])];
    const hangul = names.find((n) => /[\uac00-\ud7a3]/.test(n));
    return (S.lang === 'ko' && hangul) || info.name;
  };
  $('search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 120);
  });
  async function search() {
    const text = $('search').value.trim();
    const seq = ++searchSeq;
    if (!text) { results.hidden = true; return; }
    const found = await api('GET', `/v1/symbols?${q({ query: text, limit: 12 })}`).catch(() => ({ items: [] }));
    if (seq !== searchSeq) return;
    results.replaceChildren(...found.items.map((info, i) => el('li', {
      role: 'option', class: i === 0 ? 'active' : '', 'data-symbol': info.symbol, 'data-venue': info.venue,
      onmousedown: (e) => { e.preventDefault(); pick(info); },
    }, el('span', {}, displayName(info)), el('span', { class: 'muted' }, `${info.symbol} · ${info.venue}`))));
    results.hidden = found.items.length === 0;
    results.items = found.items;
  }
  $('search').addEventListener('keydown', (e) => {
    const items = [...results.children];
    const at = items.findIndex((li) => li.classList.contains('active'));
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const next = Math.max(0, Math.min(items.length - 1, at + (e.key === 'ArrowDown' ? 1 : -1)));
      items.forEach((li, i) => li.classList.toggle('active', i === next));
    } else if (e.key === 'Enter' && at >= 0 && results.items) {
      e.preventDefault();
      pick(results.items[at]);
    } else if (e.key === 'Escape') {
      results.hidden = true;
    }
  });
  $('search').addEventListener('blur', () => setTimeout(() => { results.hidden = true; }, 150));
  function pick(info) {
    results.hidden = true;
    $('search').value = '';
    loadSymbol(info);
  }

  async function chooseFirstSymbol() {
    const saved = JSON.parse(localStorage.getItem('tw.symbol') || 'null');
    if (saved && saved.venue && saved.symbol) {
      const found = await api('GET', `/v1/symbols?${q({ query: saved.symbol, limit: 20 })}`).catch(() => ({ items: [] }));
      const info = found.items.find((i) => i.venue === saved.venue && i.symbol === saved.symbol);
      if (info) return loadSymbol(info);
    }
    const wanted = S.alerts[0] ? S.alerts[0].symbol : '005930';
    const found = await api('GET', `/v1/symbols?${q({ query: wanted, limit: 1 })}`).catch(() => ({ items: [] }));
    const first = found.items[0] || (await api('GET', '/v1/symbols?limit=1').catch(() => ({ items: [] }))).items[0];
    if (first) await loadSymbol(first);
  }

  // ---- the chart ---------------------------------------------------------------------
  let chart = null;
  let candleSeries = null;
  let volumeSeries = null;
  let markers = null;
  const tooltip = el('div', { class: 'card small tip', hidden: '' });

  function colors() {
    // Korean charts draw rises red and falls blue; elsewhere green and red.
    return S.lang === 'ko' ? { up: '#d32f2f', down: '#1565c0' } : { up: '#26a69a', down: '#ef5350' };
  }

  function makeChart() {
    if (chart) chart.remove();
    const box = $('chart');
    box.replaceChildren();
    const { up, down } = colors();
    chart = LC.createChart(box, {
      autoSize: true,
      layout: { background: { color: '#ffffff' }, textColor: '#1d2330' },
      grid: { vertLines: { color: '#f0f1f4' }, horzLines: { color: '#f0f1f4' } },
      rightPriceScale: { borderColor: '#e3e6eb' },
      timeScale: { borderColor: '#e3e6eb', timeVisible: !daily(), secondsVisible: false },
      localization: {
        locale: S.lang === 'ko' ? 'ko-KR' : 'en-US',
        priceFormatter: (price) => fmtPrice(price),
        // Times are already in the user's zone (see chartTime): formatted as UTC.
        timeFormatter: (time) => new Intl.DateTimeFormat(S.lang === 'ko' ? 'ko-KR' : 'en-GB', daily()
          ? { timeZone: 'UTC', dateStyle: 'medium' }
          : { timeZone: 'UTC', dateStyle: 'short', timeStyle: 'short' }).format(new Date(time * 1000)),
      },
    });
    candleSeries = chart.addSeries(LC.CandlestickSeries, {
      upColor: up, downColor: down, borderUpColor: up, borderDownColor: down, wickUpColor: up, wickDownColor: down,
      // The scale also spans the alert levels, so every line can be seen and dragged.
      autoscaleInfoProvider: (original) => {
        const info = original();
        if (!info || !info.priceRange) return info;
        for (const l of S.lines.values()) {
          info.priceRange.minValue = Math.min(info.priceRange.minValue, l.price);
          info.priceRange.maxValue = Math.max(info.priceRange.maxValue, l.price);
        }
        return info;
      },
    });
    candleSeries.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
    volumeSeries = chart.addSeries(LC.HistogramSeries, {
      priceScaleId: 'volume', priceFormat: { type: 'volume' }, lastValueVisible: false, priceLineVisible: false,
    });
    chart.priceScale('volume').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    markers = LC.createSeriesMarkers(candleSeries, []);
    box.append(tooltip);
    chart.subscribeCrosshairMove(showSignalTip);
    S.lines.clear();
  }

  const toCandle = (b) => ({ time: chartTime(b.open_ts), open: b.open, high: b.high, low: b.low, close: b.close });
  const toVolume = (b) => ({
    time: chartTime(b.open_ts), value: b.volume,
    color: b.close >= b.open ? `${colors().up}66` : `${colors().down}66`,
  });
  const numeric = (c) => ({
    open_ts: c.open_ts, open: +c.open, high: +c.high, low: +c.low, close: +c.close, volume: +c.volume,
  });

  let loadSeq = 0;
  async function loadSymbol(info) {
    // Only the last load draws: a symbol or interval changed meanwhile wins.
    const seq = ++loadSeq;
    S.sym = info;
    localStorage.setItem('tw.symbol', JSON.stringify({ venue: info.venue, symbol: info.symbol }));
    $('chart-name').textContent = displayName(info);
    $('chart-symbol').textContent = `${info.symbol} · ${info.venue}`;
    if (!$('af-id').value) $('af-symbol').value = `${info.symbol} (${info.venue})`;
    let history;
    try {
      history = await api('GET', `/v1/candles?${q({ venue: info.venue, symbol: info.symbol, interval: S.interval, limit: 500 })}`);
    } catch (err) {
      toast(err.message);
      return;
    }
    if (seq !== loadSeq) return;
    S.bars = history.items.map(numeric);
    S.base = new Map(S.bars.map((b) => [b.open_ts, b]));
    S.precision = pricePrecision(history.items);
    candleSeries.applyOptions({ priceFormat: { type: 'price', precision: S.precision, minMove: 10 ** -S.precision } });
    candleSeries.setData(S.bars.map(toCandle));
    volumeSeries.setData(S.bars.map(toVolume));
    chart.timeScale().fitContent();
    $('chart-empty').hidden = S.bars.length > 0;
    showLast();
    drawAlertLines();
    subscribe();
    await loadSignals(seq);
  }

  function pricePrecision(items) {
    if (isKrw(S.sym) && ['krx', 'kospi', 'kosdaq'].includes(S.sym.venue)) return 0;
    let most = 0;
    for (const c of items.slice(-50)) {
      const d = String(c.close).split('.')[1];
      most = Math.max(most, d ? d.replace(/0+$/, '').length : 0);
    }
    return Math.min(8, Math.max(isKrw(S.sym) ? 0 : 2, most));
  }

  function showLast() {
    const last = S.bars[S.bars.length - 1];
    const prev = S.bars[S.bars.length - 2];
    $('last-price').textContent = last ? fmtPrice(last.close) : '';
    const change = last && prev && prev.close ? (last.close - prev.close) / prev.close : null;
    $('day-change').textContent = change == null ? '' : `${change >= 0 ? '+' : ''}${(change * 100).toFixed(2)}%`;
    $('day-change').className = signClass(change);
    $('last-price').className = `price ${signClass(change)}`;
    $('chart').dataset.lastClose = last ? String(last.close) : '';
    $('chart').dataset.bars = String(S.bars.length);
  }

  function onCandle(c, fromTicks) {
    if (!S.sym || c.symbol !== S.sym.symbol || c.venue !== S.sym.venue || c.interval !== S.interval) return;
    let bar = numeric(c);
    const last = S.bars[S.bars.length - 1];
    // The bar of the same time if shown (a producer's closed bar often comes after the
    // first trade of the next one).
    let at = S.bars.length - 1;
    while (at >= 0 && S.bars[at].open_ts > bar.open_ts) at -= 1;
    const same = at >= 0 && S.bars[at].open_ts === bar.open_ts;
    if (fromTicks) {
      if (last && bar.open_ts < last.open_ts) return;
      // Built from the ticks the stream saw: keep the bar's open, widen it, take the close.
      const base = S.base.get(bar.open_ts) || (same ? S.bars[at] : null);
      if (base) {
        bar = { open_ts: bar.open_ts, open: base.open, high: Math.max(base.high, bar.high),
          low: Math.min(base.low, bar.low), close: bar.close, volume: Math.max(base.volume, bar.volume) };
      }
    } else {
      S.base.set(bar.open_ts, bar);
      if (last && bar.open_ts < last.open_ts && !same) return;
    }
    const older = last && bar.open_ts < last.open_ts;
    if (same) S.bars[at] = bar;
    else S.bars.push(bar);
    try {
      candleSeries.update(toCandle(bar), older);
      volumeSeries.update(toVolume(bar), older);
    } catch (err) {
      // A time the chart cannot take in place (a clock change in the user's zone): redraw.
      candleSeries.setData(S.bars.map(toCandle));
      volumeSeries.setData(S.bars.map(toVolume));
    }
    $('chart-empty').hidden = true;
    showLast();
  }

  function barOf(ts) {
    // The bar holding `ts`: the last one that opened at or before it.
    let lo = 0;
    let hi = S.bars.length - 1;
    let found = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (S.bars[mid].open_ts <= ts) { found = S.bars[mid]; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }

  function drawMarkers() {
    const { up, down } = colors();
    const list = [];
    for (const s of S.signals) {
      if (s.interval !== S.interval) continue;
      const bar = barOf(s.ts);
      if (!bar) continue;
      const bearish = BEARISH.has(s.kind);
      list.push({
        time: chartTime(bar.open_ts), position: bearish ? 'aboveBar' : 'belowBar',
        color: bearish ? down : up, shape: bearish ? 'arrowDown' : 'arrowUp', text: SHORT[s.kind] || s.kind,
      });
    }
    list.sort((a, b) => a.time - b.time);
    markers.setMarkers(list);
    $('chart').dataset.markers = String(list.length);
  }

  function showSignalTip(param) {
    if (!param || !param.time || !param.point) { tooltip.hidden = true; return; }
    const here = S.signals.filter((s) => s.interval === S.interval && (barOf(s.ts) || {}).open_ts !== undefined
      && chartTime(barOf(s.ts).open_ts) === param.time);
    if (!here.length) { tooltip.hidden = true; return; }
    tooltip.replaceChildren(...here.map((s) => el('div', {}, `${kindLabel(s.kind)} — ${t('grade_of', { grade: s.grade, score: s.score })}`)));
    tooltip.style.left = `${Math.min(param.point.x + 12, $('chart').clientWidth - 200)}px`;
    tooltip.style.top = `${Math.max(0, param.point.y - 40)}px`;
    tooltip.hidden = false;
  }

  // Alert levels as lines; dragging one moves the alert's level, after a confirmation.
  function alertFields(a) {
    if (LEVEL_CONDITIONS.has(a.condition) && a.threshold) return ['threshold'];
    if (CHANNEL_CONDITIONS.has(a.condition) && a.low && a.high) return ['low', 'high'];
    return [];
  }

  function drawAlertLines() {
    if (!candleSeries) return;
    for (const l of S.lines.values()) candleSeries.removePriceLine(l.line);
    S.lines.clear();
    if (!S.sym) return;
    for (const a of S.alerts) {
      if (a.venue !== S.sym.venue || a.symbol !== S.sym.symbol) continue;
      for (const field of alertFields(a)) {
        const price = Number(a[field]);
        const line = candleSeries.createPriceLine({
          price, color: a.active ? '#ff9800' : '#9e9e9e', lineWidth: 2, lineStyle: LC.LineStyle.Dashed,
          axisLabelVisible: true, title: `#${a.id} ${condLabel(a.condition)}`,
        });
        S.lines.set(`${a.id}:${field}`, { line, alert: a, field, price });
      }
    }
    $('chart').dataset.alertLines = String(S.lines.size);
  }

  let drag = null;
  const chartBox = $('chart');
  const yOf = (e) => e.clientY - chartBox.getBoundingClientRect().top;
  function lineNear(y) {
    let best = null;
    let distance = 8;
    for (const l of S.lines.values()) {
      const at = candleSeries.priceToCoordinate(l.price);
      if (at != null && Math.abs(at - y) < distance) { best = l; distance = Math.abs(at - y); }
    }
    return best;
  }
  chartBox.addEventListener('pointerdown', (e) => {
    if (!candleSeries) return;
    const l = lineNear(yOf(e));
    if (!l) return;
    // Taken before the chart sees it: the chart neither pans nor zooms while a line moves.
    e.preventDefault();
    e.stopPropagation();
    drag = { l, price: l.price };
    chart.applyOptions({ handleScroll: false, handleScale: false });
    chartBox.setPointerCapture(e.pointerId);
    chartBox.classList.add('dragging');
  }, true);
  chartBox.addEventListener('pointermove', (e) => {
    if (!drag) {
      if (candleSeries) chartBox.classList.toggle('dragging', !!lineNear(yOf(e)));
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    const price = candleSeries.coordinateToPrice(yOf(e));
    if (price != null && price > 0) {
      drag.price = Number(decimalText(price));
      drag.l.line.applyOptions({ price: drag.price });
    }
  }, true);
  const endDrag = async (e) => {
    if (!drag) return;
    e.stopPropagation();
    const { l, price } = drag;
    drag = null;
    chartBox.classList.remove('dragging');
    chart.applyOptions({ handleScroll: true, handleScale: true });
    if (price === l.price) return;
    const ok = await confirmBox(t('confirm_move', {
      id: l.alert.id, field: t(l.field), from: fmtPrice(l.price), to: fmtPrice(price) }));
    if (!ok) { l.line.applyOptions({ price: l.price }); return; }
    try {
      await api('PATCH', `/v1/alerts/${l.alert.id}`, { [l.field]: decimalText(price) });
      toast(t('alert_saved', { id: l.alert.id }));
    } catch (err) {
      toast(err.message);
    }
    await loadAlerts();
  };
  chartBox.addEventListener('pointerup', endDrag, true);
  chartBox.addEventListener('pointercancel', endDrag, true);

  $('interval').addEventListener('change', () => {
    S.interval = $('interval').value;
    localStorage.setItem('tw.interval', S.interval);
    makeChart();
    if (S.sym) loadSymbol(S.sym);
  });

  // ---- alerts ------------------------------------------------------------------------
  async function loadAlerts() {
    let page;
    try {
      page = await api('GET', '/v1/alerts?limit=500');
    } catch (err) {
      toast(err.message);
      return;
    }
    S.alerts = page.items;
    renderAlerts();
    drawAlertLines();
    loadEvents();
  }

  function levelText(a) {
    if (a.condition === 'expression') return a.expression || '';
    if (CHANNEL_CONDITIONS.has(a.condition)) return `${fmtPrice(a.low, a)} – ${fmtPrice(a.high, a)}`;
    if (a.pct) return `${a.pct}% / ${a.window_s}s`;
    if (a.window_s) return `${fmtPrice(a.threshold, a)} / ${a.window_s}s`;
    return a.threshold ? fmtPrice(a.threshold, a) : '';
  }

  function renderAlerts() {
    const rows = S.alerts.map((a) => el('tr', { class: a.active ? '' : 'paused', 'data-alert': String(a.id) },
      el('td', {}, String(a.id)),
      el('td', {}, el('a', { href: '#', onclick: (e) => { e.preventDefault(); showAlertSymbol(a); } }, a.symbol)),
      el('td', {}, condLabel(a.condition)),
      el('td', {}, levelText(a)),
      el('td', {}, t(`trig_${a.trigger}`) + (a.interval ? ` (${a.interval})` : '')),
      el('td', {}, a.active ? t('active') : t('paused')),
      el('td', {},
        el('button', { type: 'button', class: 'ghost small-btn', onclick: () => editAlert(a) }, t('edit')),
        el('button', { type: 'button', class: 'ghost small-btn', onclick: () => setActive(a, !a.active) },
          a.active ? t('pause') : t('resume')),
        el('button', { type: 'button', class: 'ghost small-btn', onclick: () => showEvents(a) }, t('events')),
        el('button', { type: 'button', class: 'ghost small-btn', onclick: () => removeAlert(a) }, t('delete')))));
    $('alerts-table').tBodies[0].replaceChildren(...rows);
    $('alerts-empty').hidden = rows.length > 0;
  }

  async function showAlertSymbol(a) {
    const found = await api('GET', `/v1/symbols?${q({ query: a.symbol, limit: 20 })}`).catch(() => ({ items: [] }));
    const info = found.items.find((i) => i.venue === a.venue && i.symbol === a.symbol)
      || { venue: a.venue, symbol: a.symbol, name: a.symbol, aliases: [], market: '' };
    loadSymbol(info);
  }

  async function setActive(a, active) {
    try {
      await api('PATCH', `/v1/alerts/${a.id}`, { active });
    } catch (err) {
      toast(err.message);
    }
    await loadAlerts();
  }

  async function removeAlert(a) {
    if (!(await confirmBox(t('confirm_delete', { id: a.id })))) return;
    try {
      await api('DELETE', `/v1/alerts/${a.id}`);
      toast(t('alert_deleted', { id: a.id }));
    } catch (err) {
      toast(err.message);
    }
    await loadAlerts();
  }

  function showFormFields() {
    const c = $('af-condition').value;
    const trig = $('af-trigger').value;
    const shown = {
      threshold: LEVEL_CONDITIONS.has(c) || c === 'moving_up' || c === 'moving_down',
      channel: CHANNEL_CONDITIONS.has(c),
      pct: c === 'moving_up_pct' || c === 'moving_down_pct',
      window: c.startsWith('moving_'),
      expression: c === 'expression',
      bar: trig === 'once_per_bar' || trig === 'once_per_bar_close',
      cooldown: trig === 'every_time',
    };
    for (const label of $('alert-form').querySelectorAll('[data-for]')) label.hidden = !shown[label.dataset.for];
    return shown;
  }
  $('af-condition').addEventListener('change', showFormFields);
  $('af-trigger').addEventListener('change', showFormFields);

  function localInput(ms) {
    // `YYYY-MM-DDTHH:MM` in the user's zone, for a datetime-local field.
    const d = new Date(ms + zoneOffset(ms));
    return d.toISOString().slice(0, 16);
  }
  function fromLocalInput(text) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(text);
    if (!m) return null;
    const asUtc = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    return asUtc - zoneOffset(asUtc);
  }

  function editAlert(a) {
    $('af-id').value = String(a.id);
    $('af-symbol').value = `${a.symbol} (${a.venue})`;
    $('af-symbol').dataset.venue = a.venue;
    $('af-symbol').dataset.symbol = a.symbol;
    $('af-condition').value = a.condition;
    $('af-threshold').value = a.threshold || '';
    $('af-low').value = a.low || '';
    $('af-high').value = a.high || '';
    $('af-pct').value = a.pct || '';
    $('af-window').value = a.window_s != null ? String(a.window_s) : '3600';
    $('af-expression').value = a.expression || '';
    $('af-trigger').value = a.trigger;
    $('af-interval').value = a.interval || '1h';
    $('af-cooldown').value = String(a.cooldown_s || 0);
    $('af-expires').value = a.expires_at ? localInput(a.expires_at) : '';
    $('af-template').value = a.template || '';
    $('af-cancel').hidden = false;
    $('af-error').textContent = '';
    applyWords();
    showFormFields();
    $('alert-form').scrollIntoView({ behavior: 'smooth', block: 'center' });
  }

  function resetForm() {
    $('af-id').value = '';
    delete $('af-symbol').dataset.venue;
    delete $('af-symbol').dataset.symbol;
    if (S.sym) $('af-symbol').value = `${S.sym.symbol} (${S.sym.venue})`;
    for (const id of ['af-threshold', 'af-low', 'af-high', 'af-pct', 'af-expression', 'af-expires', 'af-template']) $(id).value = '';
    $('af-cancel').hidden = true;
    $('af-error').textContent = '';
    applyWords();
    showFormFields();
  }
  $('af-cancel').addEventListener('click', resetForm);

  $('alert-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const editing = $('af-id').value;
    const venue = $('af-symbol').dataset.venue || (S.sym && S.sym.venue);
    const symbol = $('af-symbol').dataset.symbol || (S.sym && S.sym.symbol);
    if (!venue || !symbol) { $('af-error').textContent = t('pick_symbol'); return; }
    const shown = showFormFields();
    // A new rule sends what its condition uses; an edit also clears what it no longer uses
    // (`null` removes a field in a merge patch).
    const body = { venue, symbol, condition: $('af-condition').value, trigger: $('af-trigger').value };
    const set = (key, on, value) => {
      if (on && value !== '') body[key] = value;
      else if (editing) body[key] = null;
    };
    set('threshold', shown.threshold, userDecimal($('af-threshold').value));
    set('low', shown.channel, userDecimal($('af-low').value));
    set('high', shown.channel, userDecimal($('af-high').value));
    set('pct', shown.pct, userDecimal($('af-pct').value));
    set('window_s', shown.window, $('af-window').value.trim() === '' ? '' : Number($('af-window').value));
    set('expression', shown.expression, $('af-expression').value.trim());
    set('interval', shown.bar, $('af-interval').value);
    if (shown.cooldown) body.cooldown_s = Number($('af-cooldown').value || 0);
    const expires = fromLocalInput($('af-expires').value);
    if (expires != null) body.expires_at = expires;
    else if (editing) body.expires_at = null;
    set('template', true, $('af-template').value.trim());
    try {
      const saved = editing
        ? await api('PATCH', `/v1/alerts/${editing}`, body)
        : await api('POST', '/v1/alerts', body);
      toast(t(editing ? 'alert_saved' : 'alert_created', { id: saved.id }));
      resetForm();
      await loadAlerts();
    } catch (err) {
      $('af-error').textContent = err.message;
    }
  });

  // ---- activity, signals, paper ------------------------------------------------------
  function renderEvents() {
    const items = S.events.slice(0, 50).map((ev) => el('li', {},
      el('time', {}, fmtTime(ev.ts)),
      `#${ev.rule_id} ${ev.symbol} ${condLabel(ev.condition)} ${fmtPrice(ev.threshold, ev)} → ${fmtPrice(ev.price, ev)}`));
    $('events').replaceChildren(...items);
    $('events-empty').hidden = items.length > 0;
  }

  async function loadEvents() {
    // The latest firings of the caller's most recent rules.
    const rules = S.alerts.slice(-10);
    const pages = await Promise.all(rules.map((a) =>
      api('GET', `/v1/alerts/${a.id}/events?limit=10`).catch(() => ({ items: [] }))));
    S.events = pages.flatMap((p) => p.items).sort((a, b) => b.ts - a.ts);
    renderEvents();
  }

  async function showEvents(a) {
    const page = await api('GET', `/v1/alerts/${a.id}/events?limit=50`).catch(() => ({ items: [] }));
    S.events = page.items;
    renderEvents();
    $('events').scrollIntoView({ behavior: 'smooth', block: 'center' });
  }

  async function loadNotifications() {
    const page = await api('GET', '/v1/notifications?limit=30').catch(() => null);
    if (!page) return;
    const items = page.items.map((n) => el('li', {}, el('time', {}, fmtTime(n.created_at)), plain(n.text)));
    $('notifications').replaceChildren(...items);
    $('notifications-empty').hidden = items.length > 0;
  }

  async function loadSignals(seq) {
    if (!S.sym) return;
    const sym = S.sym;
    let page;
    let stats;
    try {
      [page, stats] = await Promise.all([
        api('GET', `/v1/signals?${q({ symbol: sym.symbol, limit: 200 })}`),
        api('GET', `/v1/signals/stats?${q({ symbol: sym.symbol })}`),
      ]);
    } catch (err) {
      toast(err.message);
      return;
    }
    if (seq !== loadSeq) return;
    S.signals = page.items.filter((s) => s.venue === sym.venue);
    drawMarkers();
    renderSignals();
    const hit = (k, bars) => {
      const h = k.horizons.find((x) => x.bars === bars);
      return h && h.hit_rate != null ? `${(h.hit_rate * 100).toFixed(0)}% (${h.count})` : '–';
    };
    const mean = (k, bars) => {
      const h = k.horizons.find((x) => x.bars === bars);
      return el('span', { class: signClass(h && h.mean_return) }, fmtPct(h && h.mean_return));
    };
    $('stats-table').tBodies[0].replaceChildren(...stats.kinds.map((k) => el('tr', {},
      el('td', {}, kindLabel(k.kind)), el('td', {}, String(k.count)), el('td', {}, hit(k, 1)),
      el('td', {}, hit(k, 5)), el('td', {}, hit(k, 20)), el('td', {}, mean(k, 5)))));
  }

  function renderSignals() {
    const ret = (x) => el('td', { class: signClass(x) }, fmtPct(x));
    const rows = S.signals.slice(0, 50).map((s) => el('tr', {},
      el('td', {}, fmtTime(s.ts)), el('td', {}, `${kindLabel(s.kind)} (${s.interval})`), el('td', {}, s.grade),
      el('td', {}, fmtPrice(s.price)), ret(s.ret_1), ret(s.ret_5), ret(s.ret_20)));
    $('signals-table').tBodies[0].replaceChildren(...rows);
    $('signals-empty').hidden = rows.length > 0;
  }

  async function loadPaper() {
    const list = await api('GET', '/v1/paper/strategies').catch(() => null);
    if (!list) return;
    const summaries = await Promise.all(list.items.map((s) =>
      api('GET', `/v1/paper/strategies/${s.id}/summary`).catch(() => null)));
    const money = (x, currency) => `${new Intl.NumberFormat(S.lang === 'ko' ? 'ko-KR' : 'en-US',
      { maximumFractionDigits: currency === 'KRW' ? 0 : 2 }).format(Number(x))} ${currency}`;
    const rows = list.items.map((s, i) => {
      const sum = summaries[i];
      const ret = sum ? Number(sum.overall.total_return_pct) : null;
      return el('tr', { class: s.active ? '' : 'paused' },
        el('td', {}, s.name), el('td', {}, sum ? money(sum.equity, s.currency) : '–'),
        el('td', { class: signClass(ret) }, ret == null ? '–' : `${ret.toFixed(2)}%`),
        el('td', {}, sum ? String(sum.overall.trades) : '–'),
        el('td', {}, sum ? `${Number(sum.overall.win_rate_pct).toFixed(0)}%` : '–'),
        el('td', {}, sum ? String(sum.open_positions) : '–'),
        el('td', {}, s.active ? t('active') : t('paused')));
    });
    $('paper-table').tBodies[0].replaceChildren(...rows);
    $('paper-empty').hidden = rows.length > 0;
    const held = await Promise.all(list.items.map((s) =>
      api('GET', `/v1/paper/strategies/${s.id}/positions`).catch(() => ({ items: [] }))));
    const positions = list.items.flatMap((s, i) => held[i].items
      .filter((p) => p.status === 'open')
      .map((p) => el('tr', {},
        el('td', {}, s.name), el('td', {}, `${p.symbol} · ${p.venue}`), el('td', {}, p.quantity || ''),
        el('td', {}, p.entry_price ? fmtPrice(p.entry_price, p) : ''), el('td', {}, p.mark_price ? fmtPrice(p.mark_price, p) : ''),
        el('td', { class: signClass(Number(p.unrealized_pnl)) }, p.unrealized_pnl ? money(p.unrealized_pnl, s.currency) : ''))));
    $('positions-table').tBodies[0].replaceChildren(...positions);
    $('positions-empty').hidden = positions.length > 0;
  }

  // ---- the live stream ---------------------------------------------------------------
  let ws = null;
  let wsTries = 0;
  let wsTimer = null;
  let lastHeard = 0;
  let lastHeartbeat = 0;
  let heartbeatGap = 15000;
  let opened = false;
  let topics = [];
  let alertsTimer = null;

  const wantedTopics = () => (S.sym
    ? [`candles:${S.sym.symbol}:${S.interval}`, `signals:${S.sym.symbol}`, 'alerts:mine']
    : ['alerts:mine']);

  function setLive(state) {
    const badge = $('live');
    badge.textContent = t(state);
    badge.className = `live ${state === 'live' ? '' : 'off'}`;
    badge.dataset.state = state;
  }

  function openStream() {
    closeStream();
    topics = wantedTopics();
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/v1/stream?topics=${encodeURIComponent(topics.join(','))}`);
    ws = socket;
    socket.onopen = () => {
      wsTries = 0;
      lastHeard = Date.now();
      setLive('live');
      // After a drop, what closed meanwhile comes from the API again.
      if (opened && S.sym) loadSymbol(S.sym);
      opened = true;
    };
    socket.onmessage = (e) => { lastHeard = Date.now(); onMessage(JSON.parse(e.data)); };
    socket.onclose = () => {
      if (ws !== socket) return;
      ws = null;
      if (!S.me) return;
      // Back off 1 s, 2 s, 4 s … up to 30 s, with jitter, then open again.
      setLive('reconnecting');
      const wait = Math.min(30000, 1000 * 2 ** wsTries) * (0.75 + Math.random() / 2);
      wsTries += 1;
      wsTimer = setTimeout(async () => {
        // Refused again and again: perhaps the session ended.
        if (wsTries >= 3) {
          const state = await api('GET', '/v1/session').catch(() => null);
          if (state && !state.signed_in) { showSignIn(); return; }
        }
        if (S.me) openStream();
      }, wait);
    };
  }

  function closeStream() {
    clearTimeout(wsTimer);
    if (ws) {
      const socket = ws;
      ws = null;
      socket.close();
    }
    setLive('offline');
  }

  // A stream silent for three heartbeats is dead whatever the socket says.
  setInterval(() => {
    if (ws && ws.readyState === WebSocket.OPEN && Date.now() - lastHeard > 3 * heartbeatGap) ws.close();
  }, 5000);

  function subscribe() {
    const next = wantedTopics();
    if (!ws || ws.readyState !== WebSocket.OPEN) { topics = next; return; }
    const gone = topics.filter((x) => !next.includes(x));
    const added = next.filter((x) => !topics.includes(x));
    if (gone.length) ws.send(JSON.stringify({ op: 'unsubscribe', topics: gone }));
    if (added.length) ws.send(JSON.stringify({ op: 'subscribe', topics: added }));
    topics = next;
  }

  function onMessage(m) {
    if (m.type === 'candle') onCandle(m.data, !!m.from_ticks);
    else if (m.type === 'signal' && S.sym && m.data.symbol === S.sym.symbol && m.data.venue === S.sym.venue) {
      S.signals.unshift({ ...m.data, ret_1: null, ret_5: null, ret_20: null });
      drawMarkers();
      renderSignals();
    } else if (m.type === 'alert') {
      const a = m.data;
      S.events.unshift({ ...a, condition: a.condition });
      renderEvents();
      toast(t('alert_fired', { symbol: a.symbol, condition: condLabel(a.condition), threshold: fmtPrice(a.threshold, a), price: fmtPrice(a.price, a) }));
      // A burst of firings reloads once.
      clearTimeout(alertsTimer);
      alertsTimer = setTimeout(() => { loadAlerts(); loadNotifications(); }, 1500);
    } else if (m.type === 'error') {
      toast(m.detail);
    } else if (m.type === 'subscribed') {
      topics = m.topics;
      // A change asked for while the socket was opening is sent now.
      const want = wantedTopics();
      if (want.some((x) => !topics.includes(x)) || topics.some((x) => !want.includes(x))) subscribe();
    } else if (m.type === 'heartbeat') {
      const now = Date.now();
      if (lastHeartbeat) heartbeatGap = Math.max(5000, now - lastHeartbeat);
      lastHeartbeat = now;
    }
  }

  // For tests and the curious: where a price sits on the chart, and dropping the stream
  // the way a network would (the page reconnects by itself).
  window.tickwatchPage = {
    priceToY: (price) => (candleSeries ? candleSeries.priceToCoordinate(price) : null),
    dropStream: () => { if (ws) ws.close(); },
  };

  // ---- start -------------------------------------------------------------------------
  async function start() {
    S.lang = S.lang || (navigator.language.toLowerCase().startsWith('ko') ? 'ko' : 'en');
    applyWords();
    showFormFields();
    setLive('offline');
    $('interval').value = S.interval;
    const link = /^#login=([A-Za-z0-9_]+)$/.exec(location.hash);
    const state = await api('GET', '/v1/session').catch(() => ({ signed_in: false }));
    if (link) {
      // The token leaves the address bar and the history before it is used.
      history.replaceState(null, '', location.pathname + location.search);
      // A link someone else sent must not switch accounts unnoticed.
      if (state.signed_in && !(await confirmBox(t('switch_account', { name: state.user.name })))) {
        return signedIn(state.user);
      }
      try {
        const out = await api('POST', '/v1/session', { link: link[1] });
        return signedIn(out.user);
      } catch (err) {
        return showSignIn(t('link_failed'));
      }
    }
    if (state.signed_in) return signedIn(state.user);
    return showSignIn();
  }
  start();
})();
