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
  // Roles whose accessible name comes from their content (ARIA "name from content").
  const NAME_FROM_CONTENT = new Set(['button', 'link', 'tab', 'menuitem', 'option', 'heading', 'cell',
                                     'columnheader', 'treeitem', 'listitem']);
  // Formatting elements that only style text: a container of nothing else reads as one text.
  const INLINE_TAGS = new Set(['SPAN', 'B', 'I', 'EM', 'STRONG', 'U', 'SMALL', 'CODE', 'FONT', 'SUB', 'SUP', 'BR']);
  const NAME_MAX = 200;

  if (resetBids || window.__gymNextBid === undefined) {
    document.querySelectorAll('[bid]').forEach((el) => el.removeAttribute('bid'));
    window.__gymNextBid = 1;
  }

  const clean = (s) => s.replace(/\s+/g, ' ').trim();
  const quote = (s) => JSON.stringify(s.length > NAME_MAX ? s.slice(0, NAME_MAX) + '...' : s);

  function role(el) {
    const aria = el.getAttribute('role');
    if (aria && aria !== 'presentation' && aria !== 'none') return aria;
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

  function name(el, r) {
    const aria = el.getAttribute('aria-label');
    if (aria) return clean(aria);
    if (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') {
      return labelText(el) || clean(el.getAttribute('placeholder') || '');
    }
    if (el.tagName === 'IMG') return clean(el.getAttribute('alt') || '');
    if (el.tagName === 'OPTION' || isPlainText(el)) return clean(el.textContent);
    const own = ownText(el);
    if (!own && NAME_FROM_CONTENT.has(r)) return clean(el.textContent);
    return own || clean(el.getAttribute('title') || '');
  }

  // Click handlers set as attributes, by d3 (el.__onclick) or by jQuery (its
  // event store), or a pointer cursor the element sets itself (not inherits).
  function isClickable(el) {
    if (el.hasAttribute('onclick') || typeof el.__onclick === 'function') return true;
    const events = window.jQuery && jQuery._data ? jQuery._data(el, 'events') : null;
    if (events && (events.click || events.mousedown || events.mouseup)) return true;
    const parent = el.parentElement;
    return window.getComputedStyle(el).cursor === 'pointer' &&
      !(parent && window.getComputedStyle(parent).cursor === 'pointer');
  }

  function hasHandler(el) {
    return isClickable(el) || el.hasAttribute('tabindex') || el.hasAttribute('role');
  }

  // True when every descendant only formats text (so the element reads as one string).
  function isPlainText(el) {
    for (const child of el.querySelectorAll('*')) {
      if (!INLINE_TAGS.has(child.tagName.toUpperCase()) || hasHandler(child)) return false;
    }
    return true;
  }

  function isInteractive(el, r) {
    return ['button', 'link', 'textbox', 'checkbox', 'radio', 'combobox', 'option', 'slider',
            'spinbutton', 'tab', 'menuitem', 'dialog'].includes(r) ||
      isClickable(el) || el.hasAttribute('tabindex') || el.tagName === 'CANVAS' || el.tagName === 'svg';
  }

  function isTextContainer(el, r) {
    return !isInteractive(el, r) && isPlainText(el) && el.children.length > 0;
  }

  function properties(el, named) {
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
    if (isClickable(el)) props.push('clickable');
    if (!named) {
      // A nameless element is known by its class and colour (colour-picking tasks).
      const cls = typeof el.className === 'string' ? clean(el.className) : '';
      if (cls) props.push('class=' + quote(cls));
      const bg = window.getComputedStyle(el).backgroundColor;
      if (bg && bg !== 'rgba(0, 0, 0, 0)' && bg !== 'transparent') props.push('bg=' + quote(bg));
    }
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
    const n = shown ? name(el, r) : '';
    let childDepth = depth;
    if (shown && (n || isInteractive(el, r))) {
      let line = '  '.repeat(depth) + '[' + bidOf(el) + '] ' + r;
      if (n) line += ' ' + quote(n);
      const props = properties(el, n !== '');
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
    if (shown && isTextContainer(el, r)) return;  // its text is already in its name
    for (const child of el.children) visit(child, childDepth);
  }
  visit(document.body, 0);
  return lines.join('\n');
}
