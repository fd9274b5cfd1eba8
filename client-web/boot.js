// boot.js — a classic (non-module) script run before first paint, so that
// large-text mode and the language apply without a flash of the defaults.
try {
  if (localStorage.getItem('vh.largeText') === '1') document.documentElement.classList.add('large');
  if (localStorage.getItem('vh.lang') === 'en') document.documentElement.lang = 'en';
} catch (e) {
  // Storage disabled: defaults it is.
}
