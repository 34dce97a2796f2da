/**
 * A small reader of genimage configuration (libconfuse syntax): sections `type [name] { ... }`,
 * options `key = value` with strings, numbers, booleans and `{ "a", "b" }` lists, # comments.
 */

export type GenimageValue = string | string[];

export interface GenimageSection {
  type: string;
  name?: string;
  options: Record<string, GenimageValue>;
  sections: GenimageSection[];
}

type Token = { kind: 'word' | 'string' | 'punct'; text: string };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const pattern = /\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|([{}=,])|([^\s{}=,"#]+)/gy;
  let match: RegExpExecArray | null;
  while (pattern.lastIndex < text.length && (match = pattern.exec(text))) {
    if (match[1] !== undefined) tokens.push({ kind: 'string', text: match[1] });
    else if (match[2] !== undefined) tokens.push({ kind: 'punct', text: match[2] });
    else if (match[3] !== undefined) tokens.push({ kind: 'word', text: match[3] });
  }
  if (pattern.lastIndex < text.length) {
    throw new Error(`genimage: cannot read at offset ${pattern.lastIndex}`);
  }
  return tokens;
}

/** Parses a genimage.cfg into its top-level sections. */
export function parseGenimage(text: string): GenimageSection[] {
  const tokens = tokenize(text);
  let at = 0;
  const peek = (): Token | undefined => tokens[at];
  const next = (): Token => {
    const token = tokens[at++];
    if (!token) throw new Error('genimage: unexpected end of file');
    return token;
  };
  const expect = (text: string): void => {
    const token = next();
    if (token.text !== text) throw new Error(`genimage: expected '${text}', got '${token.text}'`);
  };

  const value = (): GenimageValue => {
    if (peek()?.text === '{') {
      next();
      const list: string[] = [];
      while (peek()?.text !== '}') {
        list.push(next().text);
        if (peek()?.text === ',') next();
      }
      next();
      return list;
    }
    return next().text;
  };

  const body = (section: GenimageSection): void => {
    while (peek() && peek()!.text !== '}') {
      const key = next();
      if (peek()?.text === '=') {
        next();
        section.options[key.text] = value();
        continue;
      }
      const child: GenimageSection = { type: key.text, options: {}, sections: [] };
      if (peek()?.text !== '{') child.name = next().text;
      expect('{');
      body(child);
      expect('}');
      section.sections.push(child);
    }
  };

  const root: GenimageSection = { type: 'root', options: {}, sections: [] };
  body(root);
  if (at !== tokens.length) throw new Error(`genimage: unexpected '${tokens[at]!.text}'`);
  return root.sections;
}

/** genimage sizes and offsets: bytes, or with a k/K, M, G suffix (powers of 1024). */
export function genimageBytes(size: string): number {
  const match = /^(\d+)([kKMG]?)$/.exec(size.trim());
  if (!match) throw new Error(`genimage: not a size: ${size}`);
  const unit = { '': 1, k: 1024, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2]!]!;
  return Number(match[1]) * unit;
}

export interface DiskPartition {
  name: string;
  partitionType?: number;
  bootable: boolean;
  bytes?: number;
  /** The filesystem of the image written into it (vfat, ext4), none when it gets no image. */
  fstype: string;
  label?: string;
  /** The FAT volume id (mkdosfs -i) of a vfat image. */
  volumeId?: string;
  /** The image file, when genimage takes it as built elsewhere (rootfs.ext4). */
  externalImage?: string;
}

export interface DiskLayout {
  image: string;
  tableType: string;
  /** Partition alignment in bytes; genimage's default for MBR is 512. */
  alignBytes: number;
  diskSignature?: string;
  partitions: DiskPartition[];
}

const FILESYSTEM_SECTIONS = ['vfat', 'ext2', 'ext3', 'ext4', 'squashfs'];

/** The disk image (the one with an hdimage section) of a genimage.cfg, partition by partition. */
export function diskLayout(sections: GenimageSection[]): DiskLayout {
  const disk = sections.find(
    (section) => section.type === 'image' && section.sections.some((s) => s.type === 'hdimage'),
  );
  if (!disk?.name) throw new Error('genimage: no image with an hdimage section');
  const hdimage = disk.sections.find((s) => s.type === 'hdimage')!;
  const images = new Map(sections.filter((s) => s.type === 'image').map((s) => [s.name, s]));
  const partitions = disk.sections
    .filter((s) => s.type === 'partition')
    .map((partition): DiskPartition => {
      const option = (key: string): string | undefined => {
        const v = partition.options[key];
        return Array.isArray(v) ? v.join(',') : v;
      };
      const imageName = option('image');
      const image = imageName === undefined ? undefined : images.get(imageName);
      const fs = image?.sections.find((s) => FILESYSTEM_SECTIONS.includes(s.type));
      const size = option('size') ?? (image?.options.size as string | undefined);
      const label = fs?.options.label as string | undefined;
      const volumeId = /(?:^|\s)-i\s+(\S+)/.exec((fs?.options.extraargs as string) ?? '')?.[1];
      const type = option('partition-type');
      return {
        name: partition.name ?? '',
        ...(type === undefined ? {} : { partitionType: Number(type) }),
        bootable: option('bootable') === 'true',
        ...(size === undefined ? {} : { bytes: genimageBytes(size) }),
        fstype: fs?.type ?? (imageName === undefined ? 'none' : `external:${imageName}`),
        ...(label === undefined ? {} : { label }),
        ...(volumeId === undefined ? {} : { volumeId }),
        ...(imageName !== undefined && !image ? { externalImage: imageName } : {}),
      };
    });
  const align = hdimage.options.align as string | undefined;
  const signature = hdimage.options['disk-signature'] as string | undefined;
  return {
    image: disk.name,
    tableType: (hdimage.options['partition-table-type'] as string | undefined) ?? 'mbr',
    alignBytes: align === undefined ? 512 : genimageBytes(align),
    ...(signature === undefined ? {} : { diskSignature: signature }),
    partitions,
  };
}
