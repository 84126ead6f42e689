// Renders the visible page as an indented, accessibility-tree-like text and
// tags every rendered element with a `bid` attribute that actions refer to.
// Called as page.evaluate(source, resetBids). Bids are stable within an
// episode (an element keeps its bid) and restart at 1 when resetBids is true,
// so the same seed gives the same text.
(resetBids) => {
  const SKIP_IDS = new Set(['reward-display', 'sync-task-cover', 'click-canvas']);
  const SKIP_TAGS = new Set(['SCRIPT', 'STYLE', 'BR', 'HEAD', 'META', 'LINK', 'NOSCRIPT', 'TEMPLATE']);
  const INPUT_ROLES = {
    checkbox: 'checkbox', radio: 'radio', button: 'button', submit: 'button', reset: 'button',
    range: 'slider', number: 'spinbutton', hidden: null,
  };
  const TAG_ROLES = {
    A: 'link', BUTTON: 'button', SELECT: 'combobox', OPTION: 'option', TEXTAREA: 'textbox',
    UL: 'list', OL: 'list', LI: 'listitem', P: 'paragraph', H1: 'heading', H2: 'heading',
    H3: 'heading', H4: 'heading', H5: 'heading', H6: 'heading', IMG: 'img', TABLE: 'table',
    TR: 'row', TD: 'cell', TH: 'columnheader', LABEL: 'label', FORM: 'form', SVG: 'svg',
  };
  const NAME_MAX = 200;

  if (resetBids || window.__gymNextBid === undefined) {
    document.querySelectorAll('[bid]').forEach((el) => el.removeAttribute('bid'));
    window.__gymNextBid = 1;
  }

  const clean = (s) => s.replace(/\s+/g, ' ').trim();
  const quote = (s) => JSON.stringify(s.length > NAME_MAX ? s.slice(0, NAME_MAX) + '...' : s);

  function role(el) {
    if (el.getAttribute('role')) return el.getAttribute('role');
    if (el.tagName === 'INPUT') {
      const type = (el.getAttribute('type') || 'text').toLowerCase();
      return type in INPUT_ROLES ? INPUT_ROLES[type] : 'textbox';
    }
    return TAG_ROLES[el.tagName.toUpperCase()] || el.tagName.toLowerCase();
  }

  function ownText(el) {
    let text = '';
    el.childNodes.forEach((child) => { if (child.nodeType === Node.TEXT_NODE) text += ' ' + child.data; });
    return clean(text);
  }

  function labelText(el) {
    if (el.labels && el.labels.length) return clean(el.labels[0].textContent);
    return '';
  }

  function name(el) {
    const aria = el.getAttribute('aria-label');
    if (aria) return clean(aria);
    if (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') {
      return labelText(el) || clean(el.getAttribute('placeholder') || '');
    }
    if (el.tagName === 'IMG') return clean(el.getAttribute('alt') || '');
    if (el.tagName === 'OPTION') return clean(el.textContent);
    return ownText(el) || clean(el.getAttribute('title') || '');
  }

  function isInteractive(el, r) {
    return ['button', 'link', 'textbox', 'checkbox', 'radio', 'combobox', 'option', 'slider',
            'spinbutton', 'tab', 'menuitem', 'dialog'].includes(r) ||
      el.hasAttribute('onclick') || typeof el.__onclick === 'function' ||
      el.hasAttribute('tabindex') || el.tagName === 'CANVAS' || el.tagName === 'svg';
  }

  function properties(el) {
    const props = [];
    if (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') {
      if (el.type === 'checkbox' || el.type === 'radio') props.push('checked=' + el.checked);
      else if (el.type !== 'button' && el.type !== 'submit') props.push('value=' + quote(el.value));
      if (el.type === 'password') props.push('type=password');
    }
    if (el.tagName === 'SELECT' && el.selectedIndex >= 0) props.push('value=' + quote(clean(el.options[el.selectedIndex].textContent)));
    if (el.tagName === 'OPTION' && el.selected) props.push('selected');
    if (el.tagName === 'A' && el.getAttribute('href')) props.push('href=' + quote(el.getAttribute('href')));
    if (el.disabled) props.push('disabled');
    if (document.activeElement === el && el !== document.body) props.push('focused');
    if (typeof el.__onclick === 'function' || el.hasAttribute('onclick')) props.push('clickable');
    return props;
  }

  function bidOf(el) {
    if (!el.hasAttribute('bid')) el.setAttribute('bid', String(window.__gymNextBid++));
    return el.getAttribute('bid');
  }

  const lines = [];
  function visit(el, depth) {
    if (SKIP_TAGS.has(el.tagName.toUpperCase()) || SKIP_IDS.has(el.id)) return;
    const style = window.getComputedStyle(el);
    if (style.display === 'none') return;
    const rect = el.getBoundingClientRect();
    const shown = style.visibility !== 'hidden' && rect.width > 0 && rect.height > 0;
    const r = role(el);
    if (r === null) return;
    const n = shown ? name(el) : '';
    let childDepth = depth;
    if (shown && (n || isInteractive(el, r))) {
      let line = '  '.repeat(depth) + '[' + bidOf(el) + '] ' + r;
      if (n) line += ' ' + quote(n);
      const props = properties(el);
      if (props.length) line += ' ' + props.join(' ');
      lines.push(line);
      childDepth = depth + 1;
    }
    if (el.tagName === 'SELECT') {
      // Options of a closed <select> have no layout box; list them anyway.
      if (shown) for (const option of el.options) {
        const props = option.selected ? ' selected' : '';
        lines.push('  '.repeat(childDepth) + '[' + bidOf(option) + '] option ' + quote(clean(option.textContent)) + props);
      }
      return;
    }
    for (const child of el.children) visit(child, childDepth);
  }
  visit(document.body, 0);
  return lines.join('\n');
}
