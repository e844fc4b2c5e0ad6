// The leaderboard: tabs for today, this week, all time (points) and rating, each around
// the player (GET /applet/leaderboard?around=...), its own row highlighted and scrolled
// into view. A player not on a board (no points today, say) sees the board's top.
const config = require('../../config.js');
const i18n = require('../../utils/i18n.js');

const TABS = [
  { key: 'day', label: 'today', by: 'score', period: 'day' },
  { key: 'week', label: 'thisWeek', by: 'score', period: 'week' },
  { key: 'all', label: 'allTime', by: 'score', period: 'all' },
  { key: 'rating', label: 'ratingTab', by: 'rating', period: 'all' },
];
const ROWS = 30;

function tabOf(key) {
  return TABS.filter((tab) => tab.key === key)[0] || TABS[0];
}

Page({
  data: {
    s: {},
    tabs: [],
    tab: 'day',
    rows: [],
    loading: false,
    error: '',
    empty: false,
    scrollTo: '',
  },

  onLoad(query) {
    this.client = getApp().globalData.client;
    this.setData({ s: i18n.table(), tabs: TABS.map((tab) => ({ key: tab.key, label: i18n.t(tab.label) })) });
    wx.setNavigationBarTitle({ title: i18n.t('boardTitle') });
    this.seq = 0;
    this.load(tabOf((query || {}).tab).key);
  },

  onTab(e) {
    this.load(tabOf(e.currentTarget.dataset.tab).key);
  },

  onBack() {
    wx.navigateBack({ fail: () => wx.redirectTo({ url: '/pages/lobby/lobby' }) });
  },

  load(key) {
    const tab = tabOf(key);
    const seq = ++this.seq;
    const player = this.client && this.client.player;
    const data = { by: tab.by, period: tab.period, limit: ROWS };
    if (player) data.around = player.id;
    const base = (this.client && this.client.options && this.client.options.httpBase) || config.httpBase;
    this.setData({ tab: tab.key, loading: true, error: '', scrollTo: '' });
    wx.request({
      url: base + '/applet/leaderboard',
      method: 'GET',
      data,
      success: (res) => {
        if (seq !== this.seq) return; // another tab was chosen meanwhile
        if (res.statusCode !== 200 || !res.data || !Array.isArray(res.data.players)) {
          this.setData({ loading: false, error: i18n.t('boardError') });
          return;
        }
        this.show(tab, res.data.players, player ? player.id : '');
      },
      fail: () => {
        if (seq !== this.seq) return;
        this.setData({ loading: false, error: i18n.t('noConnection') });
      },
    });
  },

  show(tab, players, me) {
    let scrollTo = '';
    const rows = players.map((p, index) => {
      const mine = p.id === me;
      if (mine) scrollTo = 'row-' + index;
      let value = String(p.rating);
      if (tab.by === 'score') value = i18n.t('points', { n: tab.period === 'all' ? p.total_score : p.points });
      return { id: p.id, rank: p.rank, name: p.name, rating: p.rating, value, mine, anchor: 'row-' + index };
    });
    this.setData({ rows, loading: false, empty: rows.length === 0, scrollTo });
  },
});
